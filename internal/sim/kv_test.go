package sim

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// history is the checker's record of one key: the last acknowledged write
// and every write attempted after it (a failed write may still have landed
// on some replica and legitimately win).
type history struct {
	acked    *attempt
	unknowns []attempt
	events   []string // what happened to the key, for a failure's report
}

func (h *history) note(format string, args ...any) {
	h.events = append(h.events, fmt.Sprintf(format, args...))
}

type attempt struct {
	value   []byte
	deleted bool
	version store.Version // zero for attempts that returned an error
}

func (h *history) allowed(e store.Entry, found bool) bool {
	match := func(a attempt) bool {
		if a.deleted {
			return !found || e.Tombstone
		}
		return found && !e.Tombstone && bytes.Equal(e.Value, a.value)
	}
	if h.acked != nil && match(*h.acked) {
		return true
	}
	for _, u := range h.unknowns {
		if match(u) {
			return true
		}
	}
	return false
}

func newKVCluster(t *testing.T, seed uint64, nodes int) *KVCluster {
	t.Helper()
	return newLeasedKVCluster(t, seed, nodes, 0, 0)
}

// newLeasedKVCluster is newKVCluster with read leases of lease (0: off),
// renewed while a read wanted them within idle (kv.Config.ReadLeaseIdle; 0:
// always).
func newLeasedKVCluster(t *testing.T, seed uint64, nodes int, lease, idle time.Duration) *KVCluster {
	t.Helper()
	cfg := template()
	kvcfg := kv.DefaultConfig()
	kvcfg.Replicas = 3
	kvcfg.ReadLease, kvcfg.ReadLeaseIdle = lease, idle
	c := NewKVCluster(seed, cfg, kvcfg)
	if _, err := c.CreateKV(); err != nil {
		t.Fatal(err)
	}
	for range nodes - 1 {
		members := c.Members()
		if _, err := c.JoinKV(ctx, members[c.Net.Rand().IntN(len(members))].Self().Addr); err != nil {
			t.Fatal(err)
		}
		c.Round(ctx)
	}
	converge(t, c.Cluster, 500, false)
	return c
}

func (c *KVCluster) waitIdle(t *testing.T) {
	t.Helper()
	c.mu.RLock()
	nodes := make([]*KVNode, 0, len(c.byAddr))
	for _, k := range c.byAddr {
		nodes = append(nodes, k)
	}
	c.mu.RUnlock()
	for _, k := range nodes {
		if err := k.KV.WaitIdle(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// crashAdjacentAndRepair crashes one or two adjacent members, at most r-1,
// then repairs before the next crash: the churn the replication factor is
// chosen to survive. In-flight replication of acknowledged writes lands
// first; a write acknowledged at quorum is only as safe as its replicas
// once it has reached them (see kv.Node.WaitIdle). It returns the crashes.
func (c *KVCluster) crashAdjacentAndRepair(t *testing.T) int {
	t.Helper()
	c.waitIdle(t)
	victims := c.adjacentVictims(1 + c.Net.Rand().IntN(2))
	for _, v := range victims {
		c.Crash(c.Net.Node(v.Addr))
	}
	for range 3 {
		c.RepairRound(ctx)
	}
	converge(t, c.Cluster, 100, false)
	c.RepairRound(ctx)
	return len(victims)
}

// adjacentVictims picks up to k members that follow each other on the ring.
func (c *KVCluster) adjacentVictims(k int) []chord.Peer {
	peers := c.Oracle().Peers()
	start := c.Net.Rand().IntN(len(peers))
	var out []chord.Peer
	for i := range k {
		out = append(out, peers[(start+i)%len(peers)])
	}
	return out
}

// DESIGN "Data" / issue contract: a 64-node ring under continuous churn —
// joins, graceful leaves, and crashes of at most r-1 adjacent nodes between
// repair rounds — with writers (puts and deletes) interleaved throughout.
// The checker proves that no acknowledged write is lost, and that once churn
// stops and repair settles, every key has exactly r up-to-date replicas:
// all r nodes of its oracle replica set hold its newest version and no
// other node holds it.
func TestKVChurnLosesNoAcknowledgedWrite(t *testing.T) {
	c := newKVCluster(t, 21, 64)
	rng := c.Net.Rand()
	keys := make([][]byte, 400)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%03d", i)
	}
	hist := map[string]*history{}
	var acked, batched, failed, joins, leaves, crashes int
	for step := range 4000 {
		members := c.Members()
		coordinator := c.KV(members[rng.IntN(len(members))].Self().Addr)
		switch x := rng.IntN(100); {
		case x < 12: // a batch of writes to distinct keys, spread over owners
			batch := map[string]bool{}
			var items []kv.Item
			for range 1 + rng.IntN(8) {
				key := keys[rng.IntN(len(keys))]
				if !batch[string(key)] {
					batch[string(key)] = true
					items = append(items, kv.Item{Key: key, Value: fmt.Appendf(nil, "b%d-%d", step, rng.Uint32())})
				}
			}
			for i, r := range coordinator.KV.PutMany(ctx, items, kv.Quorum, false) {
				h := hist[string(items[i].Key)]
				if h == nil {
					h = &history{}
					hist[string(items[i].Key)] = h
				}
				a := attempt{value: items[i].Value, version: r.Entry.Version}
				if r.Err != nil {
					failed++
					h.unknowns = append(h.unknowns, a)
					continue
				}
				acked++
				batched++
				h.acked, h.unknowns = &a, nil
			}
		case x < 60: // write or delete
			key := keys[rng.IntN(len(keys))]
			h := hist[string(key)]
			if h == nil {
				h = &history{}
				hist[string(key)] = h
			}
			a := attempt{deleted: rng.IntN(10) == 0}
			var err error
			if a.deleted {
				a.version, err = coordinator.KV.Delete(ctx, key, kv.Quorum, false)
			} else {
				a.value = fmt.Appendf(nil, "v%d-%d", step, rng.Uint32())
				a.version, err = coordinator.KV.Put(ctx, key, a.value, kv.Quorum, false)
			}
			if err != nil {
				failed++
				h.unknowns = append(h.unknowns, a)
				continue
			}
			acked++
			h.acked, h.unknowns = &a, nil
		case x < 63 && len(members) < 72:
			if _, err := c.JoinKV(ctx, members[rng.IntN(len(members))].Self().Addr); err != nil {
				t.Logf("step %d: join: %v", step, err)
			}
			joins++
		case x < 66 && len(members) > 56:
			if err := c.LeaveKV(ctx, coordinator); err != nil {
				t.Logf("step %d: hand-off: %v", step, err)
			}
			leaves++
		case x < 68 && len(members) > 56:
			crashes += c.crashAdjacentAndRepair(t)
		default:
			c.RepairRound(ctx)
		}
	}
	c.waitIdle(t)
	converge(t, c.Cluster, 200, false)
	for range 3 {
		c.RepairRound(ctx)
	}
	c.waitIdle(t)
	t.Logf("%d acknowledged writes (%d in batches), %d failed, %d joins, %d leaves, %d crashes; %d members at the end",
		acked, batched, failed, joins, leaves, crashes, len(c.Members()))
	if acked < 1500 || batched < 500 || crashes < 20 || joins < 20 || leaves < 20 {
		t.Fatalf("the run exercised too little to prove anything")
	}

	members := c.Members()
	// One batch read of every key from one node must agree with the
	// histories too: it groups the keys by owner and reads each group as
	// one replicated read.
	var all [][]byte
	for key := range hist {
		all = append(all, []byte(key))
	}
	reader := c.KV(members[rng.IntN(len(members))].Self().Addr)
	for i, r := range reader.KV.GetMany(ctx, all, kv.Quorum, false) {
		if r.Err != nil && !errors.Is(r.Err, kv.ErrNotFound) {
			t.Fatalf("batch get %s: %v", all[i], r.Err)
		}
		if h := hist[string(all[i])]; !h.allowed(r.Entry, r.Err == nil) {
			t.Fatalf("batch get %s = %q (found %v); last acknowledged write: %+v", all[i], r.Entry.Value, r.Err == nil, h.acked)
		}
	}
	for key, h := range hist {
		k := []byte(key)
		e, err := c.KV(members[rng.IntN(len(members))].Self().Addr).KV.Get(ctx, k, kv.Quorum, false)
		found := err == nil
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			t.Fatalf("get %s: %v", key, err)
		}
		if !h.allowed(e, found) {
			t.Fatalf("get %s = %q (found %v); last acknowledged write: %+v", key, e.Value, found, h.acked)
		}
		// Every oracle replica holds the newest version; no one else does.
		replicas := map[string]bool{}
		for _, p := range c.Replicas(k) {
			replicas[p.Addr] = true
		}
		var newest store.Version
		for _, p := range c.Oracle().Peers() {
			if got, ok, _ := c.KV(p.Addr).Store.Get(k); ok && got.Version.After(newest) {
				newest = got.Version
			}
		}
		holders := 0
		for _, p := range c.Oracle().Peers() {
			got, ok, _ := c.KV(p.Addr).Store.Get(k)
			upToDate := ok && got.Version == newest
			if replicas[p.Addr] && !upToDate {
				t.Fatalf("key %s: replica %s holds %v, newest is %v", key, p.Addr, got.Version, newest)
			}
			if upToDate {
				holders++
			}
		}
		if holders != len(replicas) {
			t.Errorf("key %s: %d nodes hold the newest version, want exactly r = %d", key, holders, len(replicas))
		}
	}
}

// A batch sent to one node reaches every owner in one call each; after an
// owner crashes and stabilization (but no anti-entropy yet) has run, a batch
// read finds every key on the replicas that remain.
func TestKVBatchAcrossOwnersAndOwnerCrash(t *testing.T) {
	c := newKVCluster(t, 5, 16)
	members := c.Members()
	coordinator := c.KV(members[0].Self().Addr)
	var items []kv.Item
	var keys [][]byte
	for i := range 200 {
		k := fmt.Appendf(nil, "batch-%03d", i)
		items = append(items, kv.Item{Key: k, Value: fmt.Appendf(nil, "v%d", i)})
		keys = append(keys, k)
	}
	owners := map[string]int{}
	for i, r := range coordinator.KV.PutMany(ctx, items, kv.Quorum, false) {
		if r.Err != nil {
			t.Fatalf("put %s: %v", items[i].Key, r.Err)
		}
		owners[c.Replicas(items[i].Key)[0].Addr]++
	}
	if len(owners) < 8 {
		t.Fatalf("the keys landed on only %d owners", len(owners))
	}
	c.waitIdle(t)
	before := coordinator.KV.Stats().Forwarded
	for i, r := range coordinator.KV.GetMany(ctx, keys, kv.All, false) {
		if r.Err != nil || string(r.Entry.Value) != string(items[i].Value) {
			t.Fatalf("get %s: %q, %v", keys[i], r.Entry.Value, r.Err)
		}
	}
	if fwd := coordinator.KV.Stats().Forwarded - before; fwd != int64(len(keys)-owners[coordinator.Chord.Self().Addr]) {
		t.Errorf("%d keys forwarded; want every key the coordinator does not own, %d", fwd, len(keys)-owners[coordinator.Chord.Self().Addr])
	}

	// Crash the owner of the most keys (not the coordinator); once
	// stabilization has dropped it, read everything back at once.
	var victim string
	for addr, n := range owners {
		if addr != coordinator.Chord.Self().Addr && (victim == "" || n > owners[victim]) {
			victim = addr
		}
	}
	c.Crash(c.Net.Node(victim))
	converge(t, c.Cluster, 100, false)
	for i, r := range coordinator.KV.GetMany(ctx, keys, kv.Quorum, false) {
		if r.Err != nil || string(r.Entry.Value) != string(items[i].Value) {
			t.Fatalf("get %s after owner %s crashed: %q, %v", keys[i], victim, r.Entry.Value, r.Err)
		}
	}
}

// Read leases under churn (kv.Config.ReadLease, Gray and Cheriton's
// leases, SOSP 1989, §2): a ring of 24 with joins, graceful leaves and
// crashes of up to r-1 adjacent nodes, with quorum reads from random
// members interleaved with the writes throughout. Owners holding leases
// answer most reads alone; no read may return a value older than the last
// acknowledged write of its key. Leases run on the simulation's virtual
// time, ten repair rounds to a lease; a crashed owner's range refuses writes
// until its grants run out, which the writers see as failed writes. Leases
// renewed always, idle after DefaultConfig's ReadLeaseIdle (ten leases,
// which few owners here reach between reads), and idle after one lease, so
// that owners let theirs lapse and take them again all through the churn.
func TestKVChurnWithReadLeasesReadsNoStaleValue(t *testing.T) {
	for _, tt := range []struct{ lease, idle time.Duration }{
		{0, 0},
		{time.Second, 0},
		{time.Second, kv.DefaultConfig().ReadLeaseIdle},
		{time.Second, time.Second},
	} {
		t.Run(fmt.Sprintf("lease=%s,idle=%s", tt.lease, tt.idle), func(t *testing.T) {
			reads, alone, stale := churnWithReads(t, churnRun{seed: 33, lease: tt.lease, leaseIdle: tt.idle, steps: 2500, crashes: true})
			t.Logf("%d quorum reads checked, %d answered alone under a lease", reads, alone)
			if stale != "" {
				t.Fatal(stale)
			}
			if tt.lease > 0 && alone < int64(reads)/4 {
				t.Errorf("only %d of %d quorum reads used a lease", alone, reads)
			}
			if tt.lease == 0 && alone != 0 {
				t.Errorf("%d reads used a lease with leases off", alone)
			}
		})
	}
}

// churnRun is one run of churnWithReads.
type churnRun struct {
	seed      uint64
	lease     time.Duration // kv.Config.ReadLease
	leaseIdle time.Duration // kv.Config.ReadLeaseIdle (0: renewed always)
	steps     int
	loss      float64 // message loss during the steps
	crashes   bool    // crash up to r-1 adjacent nodes among the steps
}

// churnWithReads runs the churn of TestKVChurnWithReadLeasesReadsNoStaleValue
// and returns the reads it checked, how many were answered under a lease,
// and the first stale read, if any.
func churnWithReads(t *testing.T, run churnRun) (reads int, alone int64, stale string) {
	c := newLeasedKVCluster(t, run.seed, 24, run.lease, run.leaseIdle)
	for range 3 {
		c.RepairRound(ctx)
	}
	c.Net.SetLoss(run.loss)
	rng := c.Net.Rand()
	keys := make([][]byte, 200)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%03d", i)
	}
	hist := map[string]*history{}
	var crashes, joins, leaves int
	var events []string // membership changes, for a failure's report
	for step := range run.steps {
		c.Advance(time.Millisecond) // a client operation's worth of real time
		members := c.Members()
		coordinator := c.KV(members[rng.IntN(len(members))].Self().Addr)
		key := keys[rng.IntN(len(keys))]
		h := hist[string(key)]
		if h == nil {
			h = &history{}
			hist[string(key)] = h
		}
		switch x := rng.IntN(100); {
		case x < 40:
			e, err := coordinator.KV.Get(ctx, key, kv.Quorum, false)
			if err != nil && !errors.Is(err, kv.ErrNotFound) {
				continue // unavailable during churn: not a stale answer
			}
			reads++
			if h.acked != nil && !h.allowed(e, err == nil) {
				// The version read shows whether the older value won by last
				// writer wins (see KVCluster.Advance).
				return reads, 0, fmt.Sprintf("step %d: get %s through %s = %q (found %v, version %+v); last acknowledged write: %+v\n%s",
					step, key, coordinator.Chord.Self().Addr, e.Value, err == nil, e.Version, h.acked,
					c.explainKey(key, append(events, h.events...)))
			}
			h.note("step %d: get through %s = %q (found %v)", step, coordinator.Chord.Self().Addr, e.Value, err == nil)
		case x < 75:
			a := attempt{value: fmt.Appendf(nil, "v%d", step)}
			var err error
			a.version, err = coordinator.KV.Put(ctx, key, a.value, kv.Quorum, false)
			h.note("step %d: put %s through %s (replicas %v): %v", step, a.value, coordinator.Chord.Self().Addr, chord.Addrs(c.Replicas(key)), err)
			if err != nil {
				h.unknowns = append(h.unknowns, a)
				continue
			}
			h.acked, h.unknowns = &a, nil
		case x < 78 && len(members) < 28:
			// Under loss the join's range pull can fail after the node
			// joined; it serves its range all the same, which counts.
			k, err := c.JoinKV(ctx, members[rng.IntN(len(members))].Self().Addr)
			if err == nil || k != nil && k.Chord.IsMember() {
				joins++
				events = append(events, fmt.Sprintf("step %d: %s joined (%v)", step, k.Chord.Self().Addr, err))
			}
		case x < 81 && len(members) > 20:
			err := c.LeaveKV(ctx, coordinator)
			leaves++
			events = append(events, fmt.Sprintf("step %d: %s left (%v)", step, coordinator.Chord.Self().Addr, err))
		case x < 83 && len(members) > 20 && run.crashes:
			if run.loss > 0 {
				// r copies survive r-1 crashes only once repair has made
				// them: a write acknowledged at quorum whose third copy
				// was lost lives on two nodes until anti-entropy copies it.
				// Crash the way the guarantee is stated, after repair.
				c.Net.SetLoss(0)
				c.waitIdle(t)
				converge(t, c.Cluster, 100, false)
				c.RepairRound(ctx)
			}
			before := chord.Addrs(c.Oracle().Peers())
			crashes += c.crashAdjacentAndRepair(t)
			c.Net.SetLoss(run.loss)
			events = append(events, fmt.Sprintf("step %d: crashed %v", step, slices.DeleteFunc(before, func(a string) bool { return c.Net.IsUp(a) })))
		default:
			c.RepairRound(ctx)
		}
	}
	c.Net.SetLoss(0)
	c.waitIdle(t)
	t.Logf("%d joins, %d leaves, %d crashes", joins, leaves, crashes)
	// Each kind comes at 2-3% of the steps, and leaves and crashes only
	// while the ring has over 20 members, so crashes crowd out leaves: ask
	// for one join and one departure per 500 steps, two at least, and with
	// crashes on for that many crashes too.
	floor := max(2, run.steps/500)
	if (run.crashes && crashes < floor) || joins < floor || leaves+crashes < floor {
		t.Fatalf("the run exercised too little churn to prove anything")
	}
	c.mu.RLock()
	for _, k := range c.byAddr { // crashed and departed nodes too
		alone += k.KV.Stats().LeaseReads
	}
	c.mu.RUnlock()
	return reads, alone, ""
}

// soakRounds counts TestKVLossyChurnWithReadLeasesReadsNoStaleValue's runs
// in this process.
var soakRounds atomic.Uint64

// Read leases under message loss: with 5% of calls lost, replicas miss
// writes, so a node that takes over a range (a joiner, a successor after a
// leave) can lack acknowledged writes of it, and a joiner's writes can be
// acknowledged without the owner that still holds the lease. Each lease
// setting runs twice: without crashes, and with crashes of up to r-1
// adjacent nodes made, as the replication guarantee is stated, after
// repair (a crash of the two nodes holding the only copies of a write whose
// third was lost would lose it, leases or not). A fifth run lets leases idle
// after one lease (ReadLeaseIdle), so that owners take theirs again and
// again under the loss. Any older answer than the last acknowledged write is
// a stale read.
//
// A soak, not a CI test (`make soak-sim`): it takes 1-4 minutes, most of it
// waiting out lost calls' deadlines. Round k of a process plays seed S+k
// (S: SIM_SOAK_SEED, default 7), and goroutine scheduling varies between
// runs too. It found a removed grantor check in one run of two, and a
// removed catch-up in none of two (the scripted TestKVLease* tests catch
// both). It found a grantor coordinating a write for an owner it could not
// reach, which leases now forbid; (with leases off) most likely a fallback
// coordinator writing to its own replica set rather than the key's
// (docs/benchmarks.md, eighth session); and most likely the join that took
// its range from its successor alone (TestKVMembershipChangeKeepsAWriteTheOwnerMissed,
// ninth session). All since fixed.
func TestKVLossyChurnWithReadLeasesReadsNoStaleValue(t *testing.T) {
	if os.Getenv("SIM_SOAK") == "" {
		t.Skip("a soak: run it with make soak-sim (SIM_SOAK=1)")
	}
	// Each round (go test -count) plays another seed: another ring and
	// another sequence of operations, not only another interleaving.
	// SIM_SOAK_SEED sets the first round's seed (default 7).
	first := uint64(7)
	if v := os.Getenv("SIM_SOAK_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SIM_SOAK_SEED=%q: %v", v, err)
		}
		first = n
	}
	seed := first + soakRounds.Add(1) - 1
	idle := kv.DefaultConfig().ReadLeaseIdle
	for _, run := range []churnRun{
		{lease: 0}, {lease: time.Second, leaseIdle: idle},
		{lease: 0, crashes: true}, {lease: time.Second, leaseIdle: idle, crashes: true},
		// Leases idle after one lease: lapsed and taken again all through.
		{lease: time.Second, leaseIdle: time.Second, crashes: true},
	} {
		run.seed, run.steps, run.loss = seed, 600, 0.05
		t.Run(fmt.Sprintf("lease=%s,idle=%s,crashes=%v", run.lease, run.leaseIdle, run.crashes), func(t *testing.T) {
			reads, alone, stale := churnWithReads(t, run)
			t.Logf("seed %d: %d quorum reads checked, %d answered alone under a lease", seed, reads, alone)
			if stale != "" {
				t.Fatal(stale)
			}
		})
	}
}

// leasedRing returns a converged ring of 8 with 1 s read leases, in which
// every node holds its lease.
func leasedRing(t *testing.T, seed uint64) *KVCluster {
	t.Helper()
	c := newLeasedKVCluster(t, seed, 8, time.Second, 0)
	for range 3 {
		c.RepairRound(ctx)
	}
	return c
}

// Read leases, the catch-up rule (kv.Node.RenewLease; Gray and Cheriton,
// SOSP 1989, §2 assume the holder's copy is current when the lease starts):
// a successor that missed an acknowledged write takes over its crashed
// owner's range and must not read that range alone until it has caught up
// with its grantors. Scripted, unlike the churn tests: B, the owner's first
// successor, is partitioned away while the owner and C acknowledge a second
// write; the owner crashes; only chord maintenance runs, so nothing but
// B's lease renewal can bring it the write before it reads alone.
func TestKVLeaseTakeOverCatchesUpMissedWrite(t *testing.T) {
	c := leasedRing(t, 41)
	key := []byte("taken-over")
	replicas := c.Replicas(key)
	owner, b := c.KV(replicas[0].Addr), c.KV(replicas[1].Addr)
	if !owner.KV.LeaseHeld() || !b.KV.LeaseHeld() {
		t.Fatalf("leases held: owner %v, successor %v; want both", owner.KV.LeaseHeld(), b.KV.LeaseHeld())
	}
	put := func(value string) {
		t.Helper()
		c.Advance(time.Millisecond)
		if _, err := owner.KV.Put(ctx, key, []byte(value), kv.Quorum, false); err != nil {
			t.Fatalf("put %s: %v", value, err)
		}
		c.waitIdle(t)
	}
	put("v1")
	c.Net.Partition([]string{b.Chord.Self().Addr})
	put("v2") // acknowledged by the owner and C; B keeps v1
	if e, ok, err := b.Store.Get(key); err != nil || !ok || string(e.Value) != "v1" {
		t.Fatalf("B holds %q (found %v), %v before the take-over; the scenario needs it to have missed v2", e.Value, ok, err)
	}
	c.Crash(owner.Chord)
	c.Net.Heal()
	// The crashed owner's grants at C run out; B's own lease with them.
	c.leaseClock.Add(int64(2 * c.kvcfg.ReadLease))
	converge(t, c.Cluster, 100, false)
	if err := b.KV.RenewLease(ctx); err != nil {
		t.Fatalf("B's lease over the taken-over range: %v", err)
	}
	before := b.KV.Stats().LeaseReads
	e, err := b.KV.Get(ctx, key, kv.Quorum, false)
	if err != nil || string(e.Value) != "v2" {
		t.Fatalf("get through the new owner = %q, %v; want v2, the last acknowledged write", e.Value, err)
	}
	if b.KV.Stats().LeaseReads == before {
		t.Fatal("the read asked a replica: the test no longer reads under the new lease")
	}
}

// Read leases, the grantor rule (kv.Node.GrantLease, ApplyFrom and
// coordinateWrite): while the owner holds a lease, its grantors neither
// coordinate writes to its range nor take them from another coordinator.
// Scripted: the owner is cut off from the rest of the ring, and a client's
// node routes a put to it, fails, and falls back to the owner's successors,
// which refuse; were the put acknowledged without the owner, the owner's
// next read alone would return the older value. The two checks back each
// other up here (the successor refuses to coordinate, and C refuses the
// successor's copy), so this fails only when both are gone; unit tests in
// internal/kv check each alone.
func TestKVLeaseGrantorsRefuseWritesTheHolderWouldMiss(t *testing.T) {
	c := leasedRing(t, 43)
	key := []byte("cut-off")
	replicas := c.Replicas(key)
	owner := c.KV(replicas[0].Addr)
	client := c.nonReplica(t, key)
	c.Advance(time.Millisecond)
	if _, err := client.KV.Put(ctx, key, []byte("v1"), kv.Quorum, false); err != nil {
		t.Fatalf("put v1: %v", err)
	}
	c.waitIdle(t)

	c.Net.Partition([]string{owner.Chord.Self().Addr})
	c.Advance(time.Millisecond)
	_, err := client.KV.Put(ctx, key, []byte("v2"), kv.Quorum, false)
	if !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("put v2 with the lease holder cut off: %v; want kv.ErrUnavailable (its grantors refuse)", err)
	}
	c.waitIdle(t)
	c.Net.Heal()

	if !owner.KV.LeaseHeld() {
		t.Fatal("the owner lost its lease: the test no longer reads under it")
	}
	before := owner.KV.Stats().LeaseReads
	e, getErr := owner.KV.Get(ctx, key, kv.Quorum, false)
	if getErr != nil {
		t.Fatalf("get: %v", getErr)
	}
	if err == nil && string(e.Value) != "v2" {
		t.Fatalf("get through the lease holder = %q after v2 was acknowledged without it", e.Value)
	}
	if owner.KV.Stats().LeaseReads == before {
		t.Fatal("the read asked a replica: the test no longer reads under the lease")
	}
}

// explainKey describes, for a stale read's report, where key's copies are:
// every live member's copy, view of its predecessor and read lease, with
// the oracle's replica set, then events (membership changes and the key's
// operations, in that order, each in step order).
func (c *KVCluster) explainKey(key []byte, events []string) string {
	var b strings.Builder
	id := ring.HashKey(key)
	fmt.Fprintf(&b, "key %s (id %s), replicas now %v\n", key, id.Short(), chord.Addrs(c.Replicas(key)))
	for _, p := range c.Oracle().Peers() {
		k := c.KV(p.Addr)
		e, found, err := k.Store.Get(key)
		copyOf := "none"
		if err != nil {
			copyOf = err.Error()
		} else if found {
			copyOf = fmt.Sprintf("%q tombstone=%v %+v", e.Value, e.Tombstone, e.Version)
		}
		ls := k.KV.Leases()
		lease := "no lease"
		if ls.Held {
			lease = fmt.Sprintf("lease (%s, %s] covers key: %v", ls.From.Short(), ls.To.Short(), ring.BetweenRightIncl(ls.From, id, ls.To))
		}
		fmt.Fprintf(&b, "  %s id %s pred %s owns %v: %s; %s, grants %d\n", p.Addr, p.ID.Short(),
			k.Chord.Neighbors().Predecessor.Addr, k.Chord.Owns(id), copyOf, lease, ls.Granted)
	}
	step := func(e string) int {
		var n int
		_, _ = fmt.Sscanf(e, "step %d:", &n)
		return n
	}
	slices.SortStableFunc(events, func(a, b string) int { return step(a) - step(b) })
	for _, e := range events {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

// joinKVAt joins the next sim-N node whose ID lies in (after, before): a
// scripted test's way of placing a joiner.
func (c *KVCluster) joinKVAt(t *testing.T, after, before ring.ID) *KVNode {
	t.Helper()
	for n := c.next; n < c.next+100_000; n++ {
		if id := chord.NewPeer(fmt.Sprintf("sim-%d", n)).ID; ring.Between(after, id, before) {
			c.next = n
			k, err := c.JoinKV(ctx, c.Members()[0].Self().Addr)
			if err != nil {
				t.Fatalf("join %s: %v", k.Chord.Self().Addr, err)
			}
			return k
		}
	}
	t.Fatalf("no sim-N address hashes into (%s, %s)", after.Short(), before.Short())
	return nil
}

// A write acknowledged by two of its three replicas, the owner's copy lost
// (the owner was cut off and a client's node fell back to its successors),
// must stay readable at quorum, and must not be lost, through membership
// changes made before anti-entropy repairs the owner. Each case failed
// before the change to kv that its comment names, with leases off and on:
//
//   - two joins in front of the owner: a joiner pulled its range from its
//     successor alone, so the first joiner pulled from the owner that missed
//     the write and the second from the first; the copies ended up fourth
//     and fifth in line, where no quorum read looks (kv.Node.SyncAfterJoin
//     now compares the range with the whole previous replica set);
//   - both other replicas leave gracefully: a leaving node handed over only
//     its primary range, so the copies left with them, and the owner's
//     anti-entropy had nothing to re-create them from (kv.Node.HandOff now
//     hands each replicated range to the node taking its place);
//   - a join right behind the owner: the joiner became the replica the
//     owner's quorum reads ask first, holding nothing of the owner's range
//     (SyncAfterJoin now pulls each range the joiner replicates from the
//     node it displaced).
func TestKVMembershipChangeKeepsAWriteTheOwnerMissed(t *testing.T) {
	tests := []struct {
		name string
		// change alters the ring around key (replicas: its replica set
		// before) and returns the node to read it through.
		change func(t *testing.T, c *KVCluster, key []byte, replicas []chord.Peer) (reader *KVNode)
	}{
		{"two joins in front of the owner", func(t *testing.T, c *KVCluster, key []byte, replicas []chord.Peer) *KVNode {
			id := ring.HashKey(key)
			second := c.joinKVAt(t, id, replicas[0].ID)
			first := c.joinKVAt(t, id, second.Chord.Self().ID)
			converge(t, c.Cluster, 100, false)
			if got := c.Replicas(key); got[0].Addr != first.Chord.Self().Addr || got[1].Addr != second.Chord.Self().Addr {
				t.Fatalf("replicas now %v; want the two joiners first", chord.Addrs(got))
			}
			return first
		}},
		{"both other replicas leave", func(t *testing.T, c *KVCluster, key []byte, replicas []chord.Peer) *KVNode {
			for _, p := range replicas[1:] {
				if err := c.LeaveKV(ctx, c.KV(p.Addr)); err != nil {
					t.Fatalf("%s leaves: %v", p.Addr, err)
				}
				converge(t, c.Cluster, 100, false)
			}
			return c.KV(replicas[0].Addr)
		}},
		{"a join right behind the owner", func(t *testing.T, c *KVCluster, key []byte, replicas []chord.Peer) *KVNode {
			joiner := c.joinKVAt(t, replicas[0].ID, replicas[1].ID)
			converge(t, c.Cluster, 100, false)
			if got := c.Replicas(key); got[1].Addr != joiner.Chord.Self().Addr {
				t.Fatalf("replicas now %v; want the joiner second", chord.Addrs(got))
			}
			return c.KV(replicas[0].Addr)
		}},
	}
	for i, tt := range tests {
		for _, lease := range []time.Duration{0, time.Second} {
			t.Run(fmt.Sprintf("%s/lease=%s", tt.name, lease), func(t *testing.T) {
				c := newLeasedKVCluster(t, uint64(47+i), 8, lease, 0)
				for range 3 {
					c.RepairRound(ctx)
				}
				key := []byte("missed-by-its-owner")
				replicas := c.Replicas(key)
				if lease > 0 {
					// The owner's grants must not refuse the fallback write.
					c.leaseClock.Add(int64(2 * lease))
				}
				c.writeMissedByOwner(t, key, "v1")
				reader := tt.change(t, c, key, replicas)
				if lease > 0 {
					// Leases again, so that owners may read alone.
					for range 2 {
						c.leaseClock.Add(int64(LeaseStep))
						for _, m := range c.Members() {
							_ = c.KV(m.Self().Addr).KV.RenewLease(ctx)
						}
					}
				}
				e, err := reader.KV.Get(ctx, key, kv.Quorum, false)
				if err != nil || string(e.Value) != "v1" {
					t.Fatalf("get through %s = %q, %v; want v1, acknowledged before the change", reader.Chord.Self().Addr, e.Value, err)
				}
			})
		}
	}
}

// nonReplica returns a member outside key's replica set: a client's node
// whose writes to key are forwarded, or fall back.
func (c *KVCluster) nonReplica(t *testing.T, key []byte) *KVNode {
	t.Helper()
	replicas := c.Replicas(key)
	for _, m := range c.Members() {
		if !slices.ContainsFunc(replicas, func(p chord.Peer) bool { return p.Addr == m.Self().Addr }) {
			return c.KV(m.Self().Addr)
		}
	}
	t.Fatalf("every member replicates %s", key)
	return nil
}

// writeMissedByOwner puts key=value at quorum through a client's node while
// key's owner is cut off, so that the owner's successors coordinate and
// acknowledge it without the owner, and returns the owner.
func (c *KVCluster) writeMissedByOwner(t *testing.T, key []byte, value string) *KVNode {
	t.Helper()
	owner := c.KV(c.Replicas(key)[0].Addr)
	client := c.nonReplica(t, key)
	c.Net.Partition([]string{owner.Chord.Self().Addr})
	c.Advance(time.Millisecond)
	if _, err := client.KV.Put(ctx, key, []byte(value), kv.Quorum, false); err != nil {
		t.Fatalf("put with the owner cut off: %v", err)
	}
	c.waitIdle(t)
	c.Net.Heal()
	if _, found, _ := owner.Store.Get(key); found {
		t.Fatal("the owner has the write: the scenario needs it to have missed it")
	}
	return owner
}

// While a node that joined right behind an owner is still taking over its
// ranges, the owner's quorum reads, which ask it first, must not count its
// empty store: it answers with its successor's copies too
// (kv.Node.ReadReplica). Scripted as in
// TestKVMembershipChangeKeepsAWriteTheOwnerMissed, with the join stopped
// before its take-over.
func TestKVReadDuringAJoinersTakeOver(t *testing.T) {
	c := newKVCluster(t, 61, 8)
	for range 3 {
		c.RepairRound(ctx)
	}
	key := []byte("missed-by-its-owner")
	replicas := c.Replicas(key)
	owner := c.writeMissedByOwner(t, key, "v1")

	for n := c.next; ; n++ {
		if id := chord.NewPeer(fmt.Sprintf("sim-%d", n)).ID; ring.Between(replicas[0].ID, id, replicas[1].ID) {
			c.next = n
			break
		}
	}
	node := c.newNode()
	joiner, err := c.attach(node)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Join(ctx, []string{owner.Chord.Self().Addr}); err != nil {
		t.Fatal(err)
	}
	converge(t, c.Cluster, 100, false)
	if got := c.Replicas(key); got[1].Addr != node.Self().Addr {
		t.Fatalf("replicas now %v; want the joiner second", chord.Addrs(got))
	}
	e, err := owner.KV.Get(ctx, key, kv.Quorum, false)
	if err != nil || string(e.Value) != "v1" {
		t.Fatalf("get through the owner while the joiner takes over = %q, %v; want v1", e.Value, err)
	}
	if n := joiner.KV.Stats().TakeOverReads; n == 0 {
		t.Error("the joiner read no key from its successor; the read did not ask it")
	}
	if err := joiner.KV.SyncAfterJoin(ctx); err != nil {
		t.Fatal(err)
	}
}

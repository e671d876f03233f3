package sim

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/store"
)

// history is the checker's record of one key: the last acknowledged write
// and every write attempted after it (a failed write may still have landed
// on some replica and legitimately win).
type history struct {
	acked    *attempt
	unknowns []attempt
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
	cfg := template()
	kvcfg := kv.DefaultConfig()
	kvcfg.Replicas = 3
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
	for _, k := range c.byAddr {
		if err := k.KV.WaitIdle(ctx); err != nil {
			t.Fatal(err)
		}
	}
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
	var acked, failed, joins, leaves, crashes int
	for step := range 4000 {
		members := c.Members()
		coordinator := c.KV(members[rng.IntN(len(members))].Self().Addr)
		switch x := rng.IntN(100); {
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
			// At most r-1 = 2 adjacent crashes, then repair before the
			// next: the churn the replication factor is chosen to survive.
			// In-flight replication of acknowledged writes lands first; a
			// write acknowledged at quorum is only as safe as its
			// replicas once it has reached them (see kv.Node.WaitIdle).
			c.waitIdle(t)
			for _, v := range c.adjacentVictims(1 + rng.IntN(2)) {
				c.Crash(c.Net.Node(v.Addr))
				crashes++
			}
			for range 3 {
				c.RepairRound(ctx)
			}
			converge(t, c.Cluster, 100, false)
			c.RepairRound(ctx)
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
	t.Logf("%d acknowledged writes, %d failed, %d joins, %d leaves, %d crashes; %d members at the end",
		acked, failed, joins, leaves, crashes, len(c.Members()))
	if acked < 1500 || crashes < 20 || joins < 20 || leaves < 20 {
		t.Fatalf("the run exercised too little to prove anything")
	}

	members := c.Members()
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

package sim

import (
	"bytes"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

type transferCounter struct{ in, out atomic.Int64 }

func (c *transferCounter) ReplicaCallSent(string, int) {}

func (c *transferCounter) EntriesHandedOff(dir kv.Direction, n int) {
	switch dir {
	case kv.DirectionIn:
		c.in.Add(int64(n))
	case kv.DirectionOut:
		c.out.Add(int64(n))
	}
}

// kv reports range transfers to its observer: a joining node pulls its
// range (in), a leaving node pushes its range to its successors (out).
func TestKVObserverSeesHandOff(t *testing.T) {
	obs := &transferCounter{}
	kvcfg := kv.DefaultConfig()
	kvcfg.Replicas = 3
	kvcfg.Observer = obs
	c := NewKVCluster(7, template(), kvcfg)
	first, err := c.CreateKV()
	if err != nil {
		t.Fatal(err)
	}
	const keys = 200
	for i := range keys {
		if _, err := first.KV.Put(ctx, fmt.Appendf(nil, "key-%d", i), []byte("v"), kv.One, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.KV.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if obs.in.Load() != 0 || obs.out.Load() != 0 {
		t.Fatalf("client writes were counted as hand-off: in %d, out %d", obs.in.Load(), obs.out.Load())
	}
	joined, err := c.JoinKV(ctx, first.Chord.Self().Addr)
	if err != nil {
		t.Fatal(err)
	}
	if obs.in.Load() == 0 {
		t.Fatal("a join pulled no entries into the newcomer")
	}
	c.Round(ctx)
	// Entries only the leaver holds (as after writes its replicas missed):
	// the ones in its primary range must be pushed when it leaves.
	var fresh []store.Entry
	for i := range keys {
		fresh = append(fresh, store.Entry{
			Key:     fmt.Appendf(nil, "late-%d", i),
			Value:   []byte("v"),
			Version: store.Version{HLC: store.HLCAt(time.Now()), Node: joined.Chord.Self().ID},
		})
	}
	if _, err := joined.KV.ApplyLocal(fresh); err != nil {
		t.Fatal(err)
	}
	before := obs.out.Load()
	if err := c.LeaveKV(ctx, joined); err != nil {
		t.Fatal(err)
	}
	if got, want := obs.out.Load()-before, joined.KV.Stats().HandedOff; got != want || got == 0 {
		t.Fatalf("leave pushed %d entries by the observer, %d by the node's stats", got, want)
	}
}

// After a join, each node pushed out of a range drops its copies at
// cleanup without writing them again to the replicas that already hold
// them: it compares bucket digests first (kv.Node.Cleanup). Before, it
// pushed every such entry to all r replicas, every round until done. A
// replica that lacks one of the entries still gets its part of the range.
func TestKVCleanupPushesOnlyWhatReplicasLack(t *testing.T) {
	for _, missing := range []bool{false, true} {
		t.Run(fmt.Sprintf("a replica missing a key=%v", missing), func(t *testing.T) {
			c, obs := newObservedKVCluster(t, 11)
			if _, err := c.JoinKV(ctx, c.Members()[0].Self().Addr); err != nil {
				t.Fatal(err)
			}
			converge(t, c.Cluster, 500, false)
			if missing {
				// A key some node holds outside its replica set: drop it
				// from one of its replicas, which cleanup must restore.
				key, replica := c.strayKey(t, observedKeys)
				var whole ring.ID // (a, a] is the whole ring
				dropped, err := c.KV(replica.Addr).Store.RemoveIf(whole, whole, func(e store.Entry) bool { return bytes.Equal(e.Key, key) })
				if err != nil || dropped != 1 {
					t.Fatalf("dropping %s from %s: %d, %v", key, replica.Addr, dropped, err)
				}
			}

			before := obs.out.Load()
			removed := c.cleanupAll(t)
			if removed == 0 {
				t.Fatal("no node dropped a copy after the join; the test does not exercise cleanup")
			}
			pushed := obs.out.Load() - before
			switch {
			case !missing && pushed != 0:
				t.Errorf("cleanup dropped %d copies and pushed %d entries to replicas that held them all", removed, pushed)
			case missing && (pushed == 0 || pushed >= int64(removed)):
				t.Errorf("cleanup dropped %d copies and pushed %d entries; want at least the missing one, and far fewer than all", removed, pushed)
			}
			c.checkReplicasHoldKeys(t)
		})
	}
}

// strayKey returns one of the first keys keys ("key-N") that some member
// holds outside the key's replica set, and the key's last replica.
func (c *KVCluster) strayKey(t *testing.T, keys int) ([]byte, chord.Peer) {
	t.Helper()
	for i := range keys {
		key := fmt.Appendf(nil, "key-%d", i)
		replicas := c.Replicas(key)
		for _, m := range c.Members() {
			if slices.ContainsFunc(replicas, func(p chord.Peer) bool { return p.Addr == m.Self().Addr }) {
				continue
			}
			if _, found, _ := c.KV(m.Self().Addr).Store.Get(key); found {
				return key, replicas[len(replicas)-1]
			}
		}
	}
	t.Fatal("no node holds a key outside its replica set")
	return nil, chord.Peer{}
}

// While a joiner takes over its ranges, periodic repair leaves it alone:
// it skips its own anti-entropy, and declines the others' anti-entropy and
// cleanup (kv.Node.DeclineRepair), which would push it the ranges its own
// pulls move, a second time. Once it has taken them over, cleanup drops
// the displaced copies, pushing nothing.
func TestKVRepairWaitsForAJoinersTakeOver(t *testing.T) {
	c, obs := newObservedKVCluster(t, 13)

	// A join stopped before its take-over.
	node := c.newNode()
	joiner, err := c.attach(node)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Join(ctx, []string{c.Members()[0].Self().Addr}); err != nil {
		t.Fatal(err)
	}
	converge(t, c.Cluster, 500, false)
	for _, m := range c.Members() {
		k := c.KV(m.Self().Addr).KV
		_, _ = k.AntiEntropy(ctx)
		_, _ = k.Cleanup(ctx)
	}
	if held := joiner.Store.Stats().Keys; held != 0 {
		t.Fatalf("repair rounds pushed %d keys to a joiner still taking over its ranges", held)
	}

	if err := joiner.KV.SyncAfterJoin(ctx); err != nil {
		t.Fatal(err)
	}
	if joiner.Store.Stats().Keys == 0 {
		t.Fatal("the take-over pulled nothing; the test does not exercise it")
	}
	before := obs.out.Load()
	removed := c.cleanupAll(t)
	if pushed := obs.out.Load() - before; removed == 0 || pushed != 0 {
		t.Errorf("after the take-over, cleanup dropped %d copies and pushed %d entries; want some dropped and none pushed", removed, pushed)
	}
	c.checkReplicasHoldKeys(t)
}

// observedKeys is how many keys newObservedKVCluster writes.
const observedKeys = 400

// newObservedKVCluster is a 6-node ring, r = 3, whose range transfers obs
// counts, holding observedKeys keys ("key-N") on all their replicas.
func newObservedKVCluster(t *testing.T, seed uint64) (*KVCluster, *transferCounter) {
	t.Helper()
	obs := &transferCounter{}
	kvcfg := kv.DefaultConfig()
	kvcfg.Replicas = 3
	kvcfg.Observer = obs
	c := NewKVCluster(seed, template(), kvcfg)
	if _, err := c.CreateKV(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		members := c.Members()
		if _, err := c.JoinKV(ctx, members[c.Net.Rand().IntN(len(members))].Self().Addr); err != nil {
			t.Fatal(err)
		}
		c.Round(ctx)
	}
	converge(t, c.Cluster, 500, false)
	via := c.KV(c.Members()[0].Self().Addr).KV
	for i := range observedKeys {
		if _, err := via.Put(ctx, fmt.Appendf(nil, "key-%d", i), []byte("v"), kv.All, false); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		c.RepairRound(ctx)
	}
	return c, obs
}

// checkReplicasHoldKeys fails t unless each of the observedKeys keys is on
// every member of its replica set.
func (c *KVCluster) checkReplicasHoldKeys(t *testing.T) {
	t.Helper()
	for i := range observedKeys {
		key := fmt.Appendf(nil, "key-%d", i)
		for _, p := range c.Replicas(key) {
			if _, found, err := c.KV(p.Addr).Store.Get(key); err != nil || !found {
				t.Fatalf("%s: replica %s has no copy: found %v, %v", key, p.Addr, found, err)
			}
		}
	}
}

// cleanupAll runs a cleanup round on every member and returns how many
// copies they dropped; a round that fails fails t.
func (c *KVCluster) cleanupAll(t *testing.T) int {
	t.Helper()
	removed := 0
	for _, m := range c.Members() {
		n, err := c.KV(m.Self().Addr).KV.Cleanup(ctx)
		if err != nil {
			t.Fatalf("cleanup at %s: %v", m.Self().Addr, err)
		}
		removed += n
	}
	return removed
}

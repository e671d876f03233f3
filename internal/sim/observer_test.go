package sim

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/kv"
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

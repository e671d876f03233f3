package kv

import (
	"errors"
	"fmt"
	"testing"

	"github.com/chordkv/chordkv/internal/store"
)

// A batch coordinated here writes every valid item to every replica in one
// local write and one call per replica, refuses the invalid ones item by
// item, and reads back per key: values, tombstones and missing keys.
func TestBatchCoordinatedHere(t *testing.T) {
	n, peers, others := newTestNode(t)
	items := []Item{
		{Key: []byte("a"), Value: []byte("1")},
		{Key: nil, Value: []byte("empty key")},
		{Key: []byte("b"), Value: []byte("2")},
		{Key: []byte("c"), Value: make([]byte, n.cfg.MaxValueBytes+1)},
		{Key: []byte("d"), Value: []byte("4")},
	}
	put := n.PutMany(ctx, items, All, false)
	for i, r := range put {
		invalid := i == 1 || i == 3
		if invalid != errors.Is(r.Err, ErrInvalidArgument) || (!invalid && (r.Err != nil || r.Entry.Version.IsZero())) {
			t.Errorf("put item %d: %+v", i, r)
		}
	}
	if err := n.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range others {
		for _, i := range []int{0, 2, 4} {
			e, ok, err := peers.stores[p.Addr].Get(items[i].Key)
			if err != nil || !ok || string(e.Value) != string(items[i].Value) || e.Version != put[i].Entry.Version {
				t.Errorf("replica %s, key %s: %+v %v %v", p.Addr, items[i].Key, e, ok, err)
			}
		}
	}
	if _, err := n.Delete(ctx, []byte("d"), All, false); err != nil {
		t.Fatal(err)
	}
	got := n.GetMany(ctx, [][]byte{[]byte("b"), []byte("missing"), []byte("d"), {}, []byte("a")}, Quorum, false)
	want := []struct {
		value string
		err   error
	}{{"2", nil}, {"", ErrNotFound}, {"", ErrNotFound}, {"", ErrInvalidArgument}, {"1", nil}}
	for i, w := range want {
		if !errors.Is(got[i].Err, w.err) || (w.err == nil && string(got[i].Entry.Value) != w.value) {
			t.Errorf("get item %d: %q, %v; want %q, %v", i, got[i].Entry.Value, got[i].Err, w.value, w.err)
		}
	}
}

// A batch needs its quorum like a single key: with two replicas of three
// down, every item of a quorum batch fails as unavailable, and at
// consistency one every item succeeds.
func TestBatchQuorum(t *testing.T) {
	n, peers, others := newTestNode(t)
	var items []Item
	var keys [][]byte
	for i := range 10 {
		k := fmt.Appendf(nil, "k%d", i)
		items = append(items, Item{Key: k, Value: k})
		keys = append(keys, k)
	}
	peers.setDead(others[0], true)
	for i, r := range n.PutMany(ctx, items, Quorum, false) {
		if r.Err != nil {
			t.Fatalf("quorum put with one replica down, item %d: %v", i, r.Err)
		}
	}
	peers.setDead(others[1], true)
	for i, r := range n.GetMany(ctx, keys, Quorum, false) {
		if !errors.Is(r.Err, ErrUnavailable) {
			t.Errorf("quorum get with two replicas down, item %d: %v, want ErrUnavailable", i, r.Err)
		}
	}
	for i, r := range n.GetMany(ctx, keys, One, false) {
		if r.Err != nil || string(r.Entry.Value) != string(keys[i]) {
			t.Errorf("get at one, item %d: %q, %v", i, r.Entry.Value, r.Err)
		}
	}
	if err := n.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := peers.stores[others[1].Addr].Get(keys[0]); !ok {
		t.Error("the replica that was up during the put lacks the key")
	}
	var zero store.Version
	if e, _, _ := peers.stores[others[0].Addr].Get(keys[0]); e.Version != zero {
		t.Error("the replica that was down during the put has the key")
	}
}

// A quorum read at r = 3 asks one other replica besides the coordinator,
// and the next only when that one fails.
func TestQuorumReadAsksOnlyWhatItNeeds(t *testing.T) {
	n, peers, others := newTestNode(t)
	if _, err := n.Put(ctx, []byte("k"), []byte("v"), All, false); err != nil {
		t.Fatal(err)
	}
	reads := func() (int, int) {
		peers.mu.Lock()
		defer peers.mu.Unlock()
		return peers.reads[others[0].Addr], peers.reads[others[1].Addr]
	}
	if _, err := n.Get(ctx, []byte("k"), Quorum, false); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if a, b := reads(); a != 1 || b != 0 {
		t.Errorf("quorum read asked the replicas %d and %d times; want 1 and 0", a, b)
	}
	// The one replica read is repaired when the coordinator's copy is
	// newer.
	v, _, _ := n.local.Get([]byte("k"))
	newer := store.Entry{Key: []byte("k"), Value: []byte("v"), Version: store.Version{HLC: v.Version.HLC + 1, Node: v.Version.Node}}
	storeIn(t, n.local, newer)
	if _, err := n.Get(ctx, []byte("k"), Quorum, false); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if e, _, _ := peers.stores[others[0].Addr].Get([]byte("k")); e.Version != newer.Version {
		t.Errorf("the replica read was not repaired: %v, want %v", e.Version, newer.Version)
	}
	if e, _, _ := peers.stores[others[1].Addr].Get([]byte("k")); e.Version == newer.Version {
		t.Errorf("the replica not read was repaired too")
	}
	if a, b := reads(); a != 2 || b != 0 {
		t.Errorf("quorum reads asked the replicas %d and %d times; want 2 and 0", a, b)
	}
	peers.setDead(others[0], true)
	if e, err := n.Get(ctx, []byte("k"), Quorum, false); err != nil || string(e.Value) != "v" {
		t.Fatalf("quorum read with the first replica down: %q, %v", e.Value, err)
	}
	if err := n.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if a, b := reads(); a != 3 || b != 1 {
		t.Errorf("after a failure the replicas were asked %d and %d times; want 3 and 1", a, b)
	}
	if _, err := n.Get(ctx, []byte("k"), One, false); err != nil {
		t.Fatal(err)
	}
	if a, b := reads(); a != 3 || b != 1 {
		t.Errorf("a read at one asked other replicas (%d, %d)", a, b)
	}
}

package kv

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// foreignRing is fakeRing for cleanup: this node's r predecessors end just
// before it, so nearly the whole ring is foreign to it (keys it replicates
// for nobody), and every lookup answers reps, the owner first.
type foreignRing struct {
	fakeRing
	preds []chord.Peer
	reps  []chord.Peer
	path  []chord.Peer // the lookup's path, when set
}

func (f foreignRing) Predecessors(context.Context, int) ([]chord.Peer, error) { return f.preds, nil }
func (f foreignRing) Lookup(context.Context, ring.ID) (chord.LookupResult, error) {
	return chord.LookupResult{Owner: f.reps[0], Successors: f.reps, Path: f.path}, nil
}

// justBefore returns an ID one below id in its last byte (id must not end in
// zero): a predecessor right behind a node.
func justBefore(t *testing.T, id ring.ID) ring.ID {
	t.Helper()
	if id[len(id)-1] == 0 {
		t.Fatal("pick another address: its ID ends in a zero byte")
	}
	id[len(id)-1]--
	return id
}

// newStrayNode is newTestNode on a foreignRing: nearly every key is foreign
// to it. Besides b:1 and c:1 there is d:1, an empty replica (third), and
// every lookup answers set, one letter a node: a (this one), b, c or d.
func newStrayNode(t *testing.T, set string) (n *Node, peers *fakePeers, others []chord.Peer, third *store.Store) {
	t.Helper()
	n, peers, others = newTestNode(t)
	d := chord.NewPeer("d:1")
	third = peers.addReplica(t, d)
	byName := map[rune]chord.Peer{'a': n.self, 'b': others[0], 'c': others[1], 'd': d}
	fr := foreignRing{fakeRing: fakeRing{self: n.self, succs: others},
		preds: []chord.Peer{chord.NewPeer("p1:1"), chord.NewPeer("p2:1"), {Addr: "p3:1", ID: justBefore(t, n.self.ID)}}}
	for _, r := range set {
		fr.reps = append(fr.reps, byName[r])
	}
	if fr.reps[0] == n.self {
		fr.path = []chord.Peer{n.self} // answered here
	}
	n.ring = fr
	return n, peers, others, third
}

// strayEntry is a settled entry of a key foreign to n (see newStrayNode).
func strayEntry(t *testing.T, n *Node) store.Entry {
	t.Helper()
	key := []byte("stray")
	if !ring.BetweenRightIncl(n.self.ID, ring.HashKey(key), justBefore(t, n.self.ID)) {
		t.Fatal("the stray key is not foreign to the node; pick another")
	}
	return store.Entry{Key: key, Value: []byte("v"), Version: store.Version{HLC: store.HLCAt(time.Now().Add(-time.Hour)), Node: n.self.ID}}
}

// Cleanup drops a copy it holds outside its replica sets only once a full
// replica set, this node not in it, holds the key: otherwise the key would
// be left with fewer than r copies (as a Dynamo node holding a hinted
// replica deletes it only after the transfer succeeds; DeCandia et al.,
// SOSP 2007, §4.6).
func TestCleanupKeepsCopiesNotSafelyHandedOver(t *testing.T) {
	tests := []struct {
		name    string
		set     string // the lookup's replica set, as newStrayNode takes it
		refuse  bool   // d, which lacks the key, refuses it
		wantErr string // in Cleanup's error
	}{
		{"a replica refuses the hand-off", "bcd", true, "hand 1 entries to d:1"},
		{"the lookup names fewer than r replicas", "bc", false, ""},
		{"the lookup names this node a replica", "bca", false, ""},
		// The node's view changed since it chose the range: it owns the
		// key after all, and answered the lookup itself.
		{"the lookup names this node the owner", "abc", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, peers, others, _ := newStrayNode(t, tt.set)
			if tt.refuse {
				peers.mu.Lock()
				peers.refuse = map[string]bool{"d:1": true}
				peers.mu.Unlock()
			}
			e := strayEntry(t, n)
			storeIn(t, n.local, e)
			storeIn(t, peers.stores[others[0].Addr], e)
			storeIn(t, peers.stores[others[1].Addr], e)

			removed, err := n.Cleanup(ctx)
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Cleanup: %v, want an error with %q", err, tt.wantErr)
			}
			if tt.wantErr == "" && err != nil {
				t.Errorf("Cleanup: %v", err)
			}
			if _, found, _ := n.local.Get(e.Key); !found || removed != 0 {
				t.Fatalf("cleanup dropped the copy (removed %d)", removed)
			}
		})
	}
}

// Once every replica holds the key, cleanup hands the missing copy over and
// drops its own.
func TestCleanupHandsOverThenDrops(t *testing.T) {
	n, peers, others, third := newStrayNode(t, "bcd")
	e := strayEntry(t, n)
	storeIn(t, n.local, e)
	storeIn(t, peers.stores[others[0].Addr], e)
	if removed, err := n.Cleanup(ctx); err != nil || removed != 1 {
		t.Fatalf("Cleanup: removed %d, %v; want the stray copy", removed, err)
	}
	for _, s := range []*store.Store{peers.stores[others[1].Addr], third} {
		if got, found, _ := s.Get(e.Key); !found || got.Version != e.Version {
			t.Fatal("a replica that lacked the key did not get it")
		}
	}
	if _, found, _ := n.local.Get(e.Key); found {
		t.Fatal("the stray copy is still here")
	}
}

// In a ring of at most r nodes every node replicates every key: cleanup has
// nothing to drop, whatever a lookup would say.
func TestCleanupInASmallRingDropsNothing(t *testing.T) {
	n, peers, others := newTestNode(t)
	n.ring = foreignRing{fakeRing: fakeRing{self: n.self, succs: others},
		preds: []chord.Peer{others[1], others[0]}, reps: []chord.Peer{others[0], others[1], others[0]}}
	e := store.Entry{Key: []byte("k"), Value: []byte("v"), Version: store.Version{HLC: store.HLCAt(time.Now().Add(-time.Hour)), Node: n.self.ID}}
	storeIn(t, n.local, e)
	for _, p := range others {
		storeIn(t, peers.stores[p.Addr], e)
	}
	if removed, err := n.Cleanup(ctx); err != nil || removed != 0 {
		t.Fatalf("Cleanup in a ring of 3 with r = 3: removed %d, %v; want nothing", removed, err)
	}
	if _, found, _ := n.local.Get(e.Key); !found {
		t.Fatal("the copy is gone")
	}
}

package e2e

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/sim"
)

// ringOracle says what the CLI must print for a ring of live members: the
// simulator's oracle (members sorted by SHA-1 of their address) applied to
// addresses, plus checks of each JSON view against it. IDs in the views are
// compared with a SHA-1 computed here, independently of internal/ring.
type ringOracle struct {
	o sim.Oracle
	r int // successor-list length the nodes run with
}

func newRingOracle(addrs []string, successors int) ringOracle {
	peers := make([]chord.Peer, len(addrs))
	for i, a := range addrs {
		peers[i] = chord.NewPeer(a)
	}
	return ringOracle{o: sim.NewOracle(peers), r: successors}
}

// hexSHA1 is the 40-hex-digit ID of an address or key.
func hexSHA1(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// order lists the members in ring order, lowest ID first.
func (o ringOracle) order() []string { return chord.Addrs(o.o.Peers()) }

func (o ringOracle) predecessor(addr string) string {
	return o.o.Predecessor(chord.NewPeer(addr)).Addr
}

func (o ringOracle) successors(addr string) []string {
	return chord.Addrs(o.o.Successors(chord.NewPeer(addr), o.r))
}

// owner is the first member whose ID is at or after SHA-1(key), wrapping.
func (o ringOracle) owner(key string) string {
	return o.o.Successor(ring.HashKey([]byte(key))).Addr
}

// checkNode compares one node's reported pointers with the oracle's.
func (o ringOracle) checkNode(addr, id, pred string, succs []string) error {
	if !slices.Contains(o.order(), addr) {
		return fmt.Errorf("%s is not a live member (members: %v)", addr, o.order())
	}
	if want := hexSHA1(addr); id != want {
		return fmt.Errorf("%s: id %s, want SHA-1(addr) %s", addr, id, want)
	}
	if want := o.predecessor(addr); pred != want {
		return fmt.Errorf("%s: predecessor %q, want %q", addr, pred, want)
	}
	if want := o.successors(addr); !slices.Equal(succs, want) {
		return fmt.Errorf("%s: successors %v, want %v", addr, succs, want)
	}
	return nil
}

// checkRing accepts a walk that lists every member exactly once in ring
// order (starting anywhere), each with its correct ID, predecessor and
// successor list.
func (o ringOracle) checkRing(v RingView) error {
	want := o.order()
	got := make([]string, len(v.Nodes))
	for i, n := range v.Nodes {
		got[i] = n.Addr
	}
	if len(got) != len(want) {
		return fmt.Errorf("ring lists %d nodes %v, want %d in order %v", len(got), got, len(want), want)
	}
	start := slices.Index(want, got[0])
	if start < 0 {
		return fmt.Errorf("ring starts at %s, not a live member (want order %v)", got[0], want)
	}
	rotated := append(slices.Clone(want[start:]), want[:start]...)
	if !slices.Equal(got, rotated) {
		return fmt.Errorf("ring order %v, want %v", got, rotated)
	}
	for _, n := range v.Nodes {
		if err := o.checkNode(n.Addr, n.ID, n.Predecessor, n.Successors); err != nil {
			return fmt.Errorf("ring entry: %w", err)
		}
	}
	return nil
}

// checkStatus accepts the status of the member at addr when its pointers are
// right and it reports itself ready.
func (o ringOracle) checkStatus(v StatusView, addr string) error {
	if v.Addr != addr {
		return fmt.Errorf("status from %s reports addr %q", addr, v.Addr)
	}
	if err := o.checkNode(v.Addr, v.ID, v.Predecessor, v.Successors); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if !v.Ready {
		return fmt.Errorf("status: %s: ready=false with a full successor list", addr)
	}
	return nil
}

// checkLookup accepts a lookup answer that names key, its SHA-1, the
// oracle's owner, hops >= 0, and a path ending at the owner.
func (o ringOracle) checkLookup(v LookupView, key string) error {
	switch {
	case v.Key != key:
		return fmt.Errorf("lookup %q: answer is for key %q", key, v.Key)
	case v.ID != hexSHA1(key):
		return fmt.Errorf("lookup %q: id %s, want SHA-1(key) %s", key, v.ID, hexSHA1(key))
	case v.Owner != o.owner(key):
		return fmt.Errorf("lookup %q: owner %s, want %s (ring order %v)", key, v.Owner, o.owner(key), o.order())
	case v.Hops < 0:
		return fmt.Errorf("lookup %q: hops %d < 0", key, v.Hops)
	case len(v.Path) == 0 || v.Path[len(v.Path)-1] != v.Owner:
		return fmt.Errorf("lookup %q: path %v does not end at the owner %s", key, v.Path, v.Owner)
	}
	return nil
}

// TestRingOracleChecks checks the checkers, without a binary: a view built
// from the oracle passes, and each kind of wrong view is caught.
func TestRingOracleChecks(t *testing.T) {
	addrs := []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003", "127.0.0.1:7004", "127.0.0.1:7005"}
	o := newRingOracle(addrs, 3)
	good := func() RingView {
		var v RingView
		for _, a := range o.order() {
			v.Nodes = append(v.Nodes, RingNode{ID: hexSHA1(a), Addr: a, Predecessor: o.predecessor(a), Successors: o.successors(a)})
		}
		return v
	}
	if got := len(good().Nodes[0].Successors); got != 3 {
		t.Fatalf("oracle successor list has %d entries, want r=3", got)
	}
	tests := []struct {
		name   string
		mutate func(*RingView)
		ok     bool
	}{
		{"oracle view", func(*RingView) {}, true},
		{"rotated walk", func(v *RingView) { v.Nodes = append(v.Nodes[2:], v.Nodes[:2]...) }, true},
		{"missing node", func(v *RingView) { v.Nodes = v.Nodes[1:] }, false},
		{"extra dead node", func(v *RingView) { v.Nodes = append(v.Nodes, RingNode{Addr: "127.0.0.1:9"}) }, false},
		{"two nodes swapped", func(v *RingView) { v.Nodes[1], v.Nodes[2] = v.Nodes[2], v.Nodes[1] }, false},
		{"reversed", func(v *RingView) { slices.Reverse(v.Nodes) }, false},
		{"wrong id", func(v *RingView) { v.Nodes[0].ID = hexSHA1("elsewhere") }, false},
		{"wrong predecessor", func(v *RingView) { v.Nodes[3].Predecessor = v.Nodes[1].Addr }, false},
		{"no predecessor", func(v *RingView) { v.Nodes[3].Predecessor = "" }, false},
		{"short successor list", func(v *RingView) { v.Nodes[4].Successors = v.Nodes[4].Successors[:2] }, false},
		{"successor list in wrong order", func(v *RingView) { slices.Reverse(v.Nodes[0].Successors) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := good()
			tc.mutate(&v)
			if err := o.checkRing(v); (err == nil) != tc.ok {
				t.Errorf("checkRing: err=%v, want ok=%v", err, tc.ok)
			}
		})
	}

	// Lookups: the owner is the first member at or after SHA-1(key),
	// wrapping past the highest ID to the lowest.
	order := o.order()
	var wrapped, inside bool
	for i := 0; i < 1000 && !(wrapped && inside); i++ {
		key := fmt.Sprintf("key-%d", i)
		v := LookupView{Key: key, ID: hexSHA1(key), Owner: o.owner(key), Path: []string{order[0], o.owner(key)}}
		if err := o.checkLookup(v, key); err != nil {
			t.Fatalf("oracle lookup rejected: %v", err)
		}
		if hexSHA1(key) > hexSHA1(order[len(order)-1]) {
			wrapped = true
			if v.Owner != order[0] {
				t.Fatalf("key %s lies past every node: owner %s, want the lowest node %s", key, v.Owner, order[0])
			}
		} else {
			inside = true
			// The owner's ID is at or after the key's, its predecessor's before.
			own, pred := hexSHA1(v.Owner), hexSHA1(o.predecessor(v.Owner))
			if own < v.ID || (pred < own && pred >= v.ID) {
				t.Fatalf("key %s (%s): owner %s (%s) with predecessor %s is not successor(key)", key, v.ID, v.Owner, own, pred)
			}
		}
	}
	if !wrapped || !inside {
		t.Fatalf("no key found for both cases (wrapped=%v inside=%v)", wrapped, inside)
	}
	bad := []struct {
		name   string
		mutate func(*LookupView)
	}{
		{"wrong owner", func(v *LookupView) { v.Owner = o.predecessor(v.Owner) }},
		{"path not ending at owner", func(v *LookupView) { v.Path = v.Path[:1] }},
		{"empty path", func(v *LookupView) { v.Path = nil }},
		{"negative hops", func(v *LookupView) { v.Hops = -1 }},
		{"wrong id", func(v *LookupView) { v.ID = hexSHA1("other") }},
		{"wrong key", func(v *LookupView) { v.Key = "other" }},
	}
	for _, tc := range bad {
		t.Run("lookup "+tc.name, func(t *testing.T) {
			key := "k"
			owner := o.owner(key)
			v := LookupView{Key: key, ID: hexSHA1(key), Owner: owner, Path: []string{o.predecessor(owner), owner}, Hops: 1}
			if err := o.checkLookup(v, key); err != nil {
				t.Fatalf("oracle lookup rejected: %v", err)
			}
			tc.mutate(&v)
			if err := o.checkLookup(v, key); err == nil {
				t.Errorf("checkLookup accepted %+v", v)
			}
		})
	}
}

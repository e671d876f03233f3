package chord

import (
	"context"
	"fmt"
	"slices"

	"github.com/chordkv/chordkv/internal/ring"
)

// State is a snapshot of a node's routing state, for status pages, tests and
// the simulator's oracle checks.
type State struct {
	Self        Peer
	Predecessor Peer
	Successors  []Peer
	// Fingers lists the distinct finger-table targets other than the node
	// itself, in finger order.
	Fingers []Peer
	// Member is true once the node created a ring or joined one.
	Member bool
	// Ready is true for a member whose successor list is full (r entries,
	// or the whole ring when it has fewer than r+1 members) and has been
	// confirmed by a stabilize against a live successor. Only then does it
	// survive r-1 successor failures, so health checks report it.
	Ready bool
}

// State returns a copy of the node's routing state.
func (n *Node) State() State {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return State{
		Self:        n.self,
		Predecessor: n.pred,
		Successors:  slices.Clone(n.succs),
		Fingers:     slices.DeleteFunc(n.fingers.distinct(), func(p Peer) bool { return p.Addr == n.self.Addr }),
		Member:      n.member,
		Ready:       n.member && n.listFull && n.confirmed,
	}
}

// IsMember reports whether the node created or joined a ring and has not
// left it.
func (n *Node) IsMember() bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.member
}

// Successor is the first successor-list entry, or this node when alone.
func (n *Node) Successor() Peer {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.successorLocked()
}

// Finger returns finger-table entry i, if set.
func (n *Node) Finger(i int) (Peer, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.fingers.get(i)
}

// StateSize is the number of distinct peers the node keeps: predecessor,
// successors and fingers together. Chord promises O(log N).
func (n *Node) StateSize() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	seen := make(map[string]struct{}, len(n.succs)+ring.Bits/8)
	if !n.pred.IsZero() {
		seen[n.pred.Addr] = struct{}{}
	}
	for _, p := range n.succs {
		seen[p.Addr] = struct{}{}
	}
	for k, p := range n.fingers.peers {
		if n.fingers.refs[k] > 0 {
			seen[p.Addr] = struct{}{}
		}
	}
	return len(seen)
}

// Owns reports whether id falls in (predecessor, self]: this node is its
// owner as far as this node knows. With no known predecessor it claims
// nothing but its own ID.
func (n *Node) Owns(id ring.ID) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.pred.IsZero() {
		return id == n.self.ID || len(n.succs) == 0
	}
	return ring.BetweenRightIncl(n.pred.ID, id, n.self.ID)
}

// Predecessors walks predecessor pointers back from this node and returns
// up to k of them, nearest first. It stops early, without error, when the
// walk comes back round to this node: the ring has at most k other members.
// The replication layer uses it to learn the range it replicates, which
// starts at its r-th predecessor.
func (n *Node) Predecessors(ctx context.Context, k int) ([]Peer, error) {
	var out []Peer
	at := n.Neighbors().Predecessor
	for len(out) < k {
		if at.IsZero() {
			return out, fmt.Errorf("predecessors of %s: %s's predecessor is unknown", n.self.Addr, lastOr(out, n.self).Addr)
		}
		if at.Addr == n.self.Addr || slices.ContainsFunc(out, func(p Peer) bool { return p.Addr == at.Addr }) {
			return out, nil
		}
		out = append(out, at)
		if len(out) == k {
			break
		}
		nb, err := n.getNeighbors(ctx, at)
		if err != nil {
			return out, fmt.Errorf("predecessors of %s: %w", n.self.Addr, err)
		}
		at = nb.Predecessor
	}
	return out, nil
}

func lastOr(ps []Peer, def Peer) Peer {
	if len(ps) == 0 {
		return def
	}
	return ps[len(ps)-1]
}

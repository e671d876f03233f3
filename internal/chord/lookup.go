package chord

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/chordkv/chordkv/internal/ring"
)

// LookupResult is where an id lives and how the lookup got there.
type LookupResult struct {
	// Owner is successor(id): the first node at or after id.
	Owner Peer
	// Successors is the successor list of the owner's predecessor, starting
	// with the owner: the owner's replicas, without another round trip.
	Successors []Peer
	// Path lists the nodes the lookup went through: the node it started at,
	// every node that answered a step, and last the owner.
	Path []Peer
	// Hops is len(Path)-1: messages needed to reach the owner.
	Hops int
	// Failed counts candidates that did not answer and were routed around.
	Failed int
}

// FindSuccessorStep answers one step of an iterative lookup for id (Chord
// paper §4.3, find_successor, with the successor list as extra routing
// state). If id lies in (self, successor] the lookup is done; otherwise it
// returns this node's closest preceding nodes for id, closest first.
func (n *Node) FindSuccessorStep(id ring.ID) Step {
	n.mu.RLock()
	defer n.mu.RUnlock()
	succ := n.successorLocked()
	if ring.BetweenRightIncl(n.self.ID, id, succ.ID) {
		list := n.succs
		if len(list) == 0 {
			list = []Peer{n.self}
		}
		return Step{Done: true, Successors: slices.Clone(list)}
	}
	next := n.closestPrecedingLocked(id, n.cfg.LookupCandidates)
	// The successor always makes progress (id is past it) and stabilize keeps
	// it live, so it goes last: a lookup whose finger candidates are all dead
	// after a mass failure still moves forward instead of giving up.
	if !slices.ContainsFunc(next, func(p Peer) bool { return p.Addr == succ.Addr }) {
		next = append(next, succ)
	}
	return Step{Next: next}
}

// closestPrecedingLocked returns up to k distinct known nodes in
// (self, id), the one closest to id first, drawn from both the finger table
// and the successor list. The successor list matters late in a lookup, where
// fingers are coarse, and when fingers are stale after churn.
//
// It is on every lookup's path, so it keeps a small insertion-sorted top-k
// instead of collecting and sorting every candidate.
func (n *Node) closestPrecedingLocked(id ring.ID, k int) []Peer {
	type ranked struct {
		p    Peer
		dist ring.ID // clockwise from self: larger is closer to id
	}
	best := make([]ranked, 0, k+1)
	consider := func(p Peer) {
		if p.IsZero() || !ring.Between(n.self.ID, p.ID, id) {
			return
		}
		d := ring.Distance(n.self.ID, p.ID)
		i := 0
		for ; i < len(best); i++ {
			if best[i].p.Addr == p.Addr {
				return
			}
			if d.Cmp(best[i].dist) > 0 {
				break
			}
		}
		if i == k {
			return
		}
		for _, r := range best[i:] { // a duplicate further down would be worse
			if r.p.Addr == p.Addr {
				return
			}
		}
		best = append(best, ranked{})
		copy(best[i+1:], best[i:])
		best[i] = ranked{p, d}
		if len(best) > k {
			best = best[:k]
		}
	}
	for slot, p := range n.fingers.peers {
		if n.fingers.refs[slot] > 0 {
			consider(p)
		}
	}
	for _, p := range n.succs {
		consider(p)
	}
	out := make([]Peer, len(best))
	for i, r := range best {
		out[i] = r.p
	}
	return out
}

// Lookup finds successor(id) iteratively, starting from this node's own
// routing state. A candidate that fails is skipped for the next one; when a
// step's candidates are all dead the lookup backs up to the previous step's
// remaining candidates. At most MaxLookupAttempts remote calls are made.
func (n *Node) Lookup(ctx context.Context, id ring.ID) (LookupResult, error) {
	return n.lookup(ctx, n.self, id, true)
}

// LookupFrom runs a lookup whose first step is answered by start instead of
// this node, as joining does before the node has any routing state.
func (n *Node) LookupFrom(ctx context.Context, start Peer, id ring.ID) (LookupResult, error) {
	return n.lookup(ctx, start, id, false)
}

type lookupFrame struct {
	at    Peer
	next  []Peer
	pathN int
}

// lookup reports every lookup, successful or not, to the observer.
func (n *Node) lookup(ctx context.Context, start Peer, id ring.ID, useSelf bool) (LookupResult, error) {
	began := time.Now()
	res, err := n.route(ctx, start, id, useSelf)
	hops := res.Hops
	if err != nil {
		hops = max(len(res.Path)-1, 0) // the hops made before it gave up
	}
	n.cfg.Observer.LookupDone(hops, time.Since(began), err)
	return res, err
}

func (n *Node) route(ctx context.Context, start Peer, id ring.ID, useSelf bool) (LookupResult, error) {
	res := LookupResult{}
	if useSelf && start.Addr == n.self.Addr && n.Owns(id) {
		// The id is in (predecessor, self]: this node is the owner. Routing
		// would only go round to the predecessor and back. Rectify keeps the
		// predecessor current: a newcomer notifies its successor as it joins.
		nb := n.Neighbors()
		res.Owner = n.self
		res.Successors = append([]Peer{n.self}, nb.Successors...)
		res.Path = []Peer{n.self}
		return res, nil
	}
	step, err := n.step(ctx, start, id, useSelf)
	if err != nil {
		return res, fmt.Errorf("lookup %s: first hop %s: %w", id.Short(), start.Addr, err)
	}
	res.Path = append(res.Path, start)
	stack := []lookupFrame{{at: start, next: step.Next, pathN: 1}}
	attempts := 0
	for !step.Done {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("lookup %s: %w", id.Short(), err)
		}
		top := &stack[len(stack)-1]
		if len(top.next) == 0 {
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return res, fmt.Errorf("lookup %s after %d failed hops: %w", id.Short(), res.Failed, ErrLookupFailed)
			}
			res.Path = res.Path[:stack[len(stack)-1].pathN]
			continue
		}
		c := top.next[0]
		top.next = top.next[1:]
		// Every hop must move strictly closer to id; anything else is stale
		// routing state and could loop.
		if !ring.Between(top.at.ID, c.ID, id) || (c.Addr == n.self.Addr && !useSelf) {
			continue
		}
		if attempts >= n.cfg.MaxLookupAttempts {
			return res, fmt.Errorf("lookup %s: gave up after %d attempts: %w", id.Short(), attempts, ErrLookupFailed)
		}
		attempts++
		st, err := n.step(ctx, c, id, useSelf)
		if err != nil {
			res.Failed++
			n.suspect(c)
			n.log.Debug("lookup: hop failed, trying next candidate", "hop", c.Addr, "err", err)
			continue
		}
		res.Path = append(res.Path, c)
		stack = append(stack, lookupFrame{at: c, next: st.Next, pathN: len(res.Path)})
		step = st
	}
	if len(step.Successors) == 0 {
		return res, fmt.Errorf("lookup %s: %s answered with no successor: %w", id.Short(), res.Path[len(res.Path)-1].Addr, ErrLookupFailed)
	}
	res.Owner = step.Successors[0]
	res.Successors = step.Successors
	if res.Path[len(res.Path)-1].Addr != res.Owner.Addr {
		res.Path = append(res.Path, res.Owner)
	}
	res.Hops = len(res.Path) - 1
	return res, nil
}

// step asks p for one lookup step, answering locally when p is this node.
func (n *Node) step(ctx context.Context, p Peer, id ring.ID, useSelf bool) (Step, error) {
	if p.Addr == n.self.Addr && useSelf {
		return n.FindSuccessorStep(id), nil
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.CallTimeout)
	defer cancel()
	return n.t.FindSuccessorStep(cctx, p, id)
}

// suspect drops a peer that failed a call from the finger table; fix-fingers
// will find a live replacement. Successor-list entries are left to
// stabilize, which skips them when they really are dead.
func (n *Node) suspect(p Peer) {
	n.mu.Lock()
	n.fingers.remove(p.Addr)
	n.mu.Unlock()
	n.remember(p)
}

package chord

import (
	"context"
	"fmt"
	"slices"

	"github.com/chordkv/chordkv/internal/ring"
)

// remember keeps a peer that just failed a call, so that CheckRing can try
// it again later: after a partition heals, the nodes on the other side are
// exactly the ones that failed.
func (n *Node) remember(p Peer) {
	if p.IsZero() || p.Addr == n.self.Addr {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.alumni = slices.DeleteFunc(n.alumni, func(q Peer) bool { return q.Addr == p.Addr })
	if len(n.alumni) == maxAlumni {
		n.alumni = n.alumni[1:]
	}
	n.alumni = append(n.alumni, p)
}

// CheckRing guards against what stabilization alone cannot repair: a ring
// split in two, by a partition that outlived every timeout, stays two rings
// forever in the 2001 protocol (and in Zave's, whose proof assumes it never
// happens). Each call asks one peer from outside this node's current
// routing state, a seed or a peer that failed recently and answers again,
// to look up successor(self+1). If that peer's ring knows a live node
// between this node and its successor, the node adopts it, exactly as
// stabilize adopts a closer predecessor; stabilize and rectify then zip the
// two rings together. In a healthy ring the answer is the current successor
// and nothing changes.
func (n *Node) CheckRing(ctx context.Context) error {
	n.mu.Lock()
	var probes []Peer
	for _, a := range n.seeds {
		if a != "" && a != n.self.Addr {
			probes = append(probes, NewPeer(a))
		}
	}
	probes = append(probes, n.alumni...)
	if len(probes) == 0 || !n.member {
		n.mu.Unlock()
		return nil
	}
	probe := probes[n.nextCheck%len(probes)]
	n.nextCheck++
	succ := n.successorLocked()
	n.mu.Unlock()

	res, err := n.LookupFrom(ctx, probe, n.self.ID.AddPow2(0))
	if err != nil {
		return fmt.Errorf("check ring via %s: %w", probe.Addr, err)
	}
	n.mu.Lock()
	n.alumni = slices.DeleteFunc(n.alumni, func(q Peer) bool { return q.Addr == probe.Addr })
	n.mu.Unlock()
	found := res.Owner
	if found.Addr == n.self.Addr || found.Addr == succ.Addr {
		return nil
	}
	if succ.Addr != n.self.Addr && !ring.Between(n.self.ID, found.ID, succ.ID) {
		return nil
	}
	nb, err := n.getNeighbors(ctx, found)
	if err != nil {
		return fmt.Errorf("check ring: %s found via %s: %w", found.Addr, probe.Addr, err)
	}
	n.mu.Lock()
	n.setSuccessorsLocked(n.buildList(found, nb.Successors))
	n.mu.Unlock()
	n.log.Warn("found a closer successor outside this node's ring view; merging", "successor", found.Addr, "via", probe.Addr)
	n.notify(ctx, found)
	return nil
}

package metrics

import (
	"math"
	"slices"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
)

// EstimateRingSize estimates the number of ring members from one node's
// routing state. IDs are SHA-1 hashes, so members are spread uniformly: if
// the predecessor and k successors span a clockwise arc d of the 2^160
// circle, that arc holds k+1 gaps between neighbours (k without a known
// predecessor), and N ≈ gaps * 2^160 / d. With the default 8 successors the
// estimate is within roughly ±35% on one node; averaged over nodes it is
// much better.
//
// A successor list that has wrapped round the ring (it holds the
// predecessor: the ring has at most r+1 members) gives the exact count. A
// node alone is a ring of one; a node that is not a member reports 0.
func EstimateRingSize(st chord.State) float64 {
	if !st.Member {
		return 0
	}
	succs := slices.DeleteFunc(slices.Clone(st.Successors), func(p chord.Peer) bool {
		return p.IsZero() || p.Addr == st.Self.Addr
	})
	if len(succs) == 0 {
		return 1
	}
	pred := st.Predecessor
	if !pred.IsZero() && slices.ContainsFunc(succs, func(p chord.Peer) bool { return p.Addr == pred.Addr }) {
		return float64(len(succs) + 1)
	}
	from, gaps := st.Self.ID, len(succs)
	if !pred.IsZero() {
		from, gaps = pred.ID, gaps+1
	}
	arc := circleFraction(ring.Distance(from, succs[len(succs)-1].ID))
	if arc == 0 { // only if the last successor sits on the arc's start: the list wrapped
		return float64(len(succs) + 1)
	}
	return float64(gaps) / arc
}

// circleFraction is d / 2^160 as a float: the share of the ring an arc of
// clockwise length d covers.
func circleFraction(d ring.ID) float64 {
	f := 0.0
	for _, b := range d {
		f = f*256 + float64(b)
	}
	return math.Ldexp(f, -8*len(d))
}

package sim

import (
	"slices"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
)

// Oracle knows the true ring: every live member sorted by ID. What a correct
// Chord node should hold follows from it directly.
type Oracle struct {
	peers []chord.Peer
}

// NewOracle sorts the given members into ring order.
func NewOracle(members []chord.Peer) Oracle {
	peers := slices.Clone(members)
	slices.SortFunc(peers, func(a, b chord.Peer) int { return a.ID.Cmp(b.ID) })
	return Oracle{peers: peers}
}

// Len is the number of members.
func (o Oracle) Len() int { return len(o.peers) }

// Peers lists the members in ring order.
func (o Oracle) Peers() []chord.Peer { return o.peers }

// search returns the index of the first member with ID >= id, wrapping to 0.
func (o Oracle) search(id ring.ID) int {
	i, _ := slices.BinarySearchFunc(o.peers, id, func(p chord.Peer, id ring.ID) int { return p.ID.Cmp(id) })
	if i == len(o.peers) {
		return 0
	}
	return i
}

// Successor is the owner of id: the first member at or after it.
func (o Oracle) Successor(id ring.ID) chord.Peer { return o.peers[o.search(id)] }

// Successors is the correct successor list of member p: the next
// min(r, N-1) members after it.
func (o Oracle) Successors(p chord.Peer, r int) []chord.Peer {
	n := len(o.peers)
	i := o.search(p.ID)
	k := min(r, n-1)
	out := make([]chord.Peer, 0, k)
	for j := 1; j <= k; j++ {
		out = append(out, o.peers[(i+j)%n])
	}
	return out
}

// Predecessor is the member just before p, or the zero Peer in a ring of one.
func (o Oracle) Predecessor(p chord.Peer) chord.Peer {
	n := len(o.peers)
	if n < 2 {
		return chord.Peer{}
	}
	return o.peers[(o.search(p.ID)+n-1)%n]
}

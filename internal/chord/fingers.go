package chord

import "github.com/chordkv/chordkv/internal/ring"

// fingerTable stores the 160 entries of the Chord finger table compactly.
// In an N-node ring only about log2(N) entries are distinct (the low ones
// all point at the successor), so each entry is a one-byte index into a
// small slice of distinct peers instead of a full Peer: 160 bytes plus
// log2(N) peers per node rather than 160 peers.
type fingerTable struct {
	idx   [ring.Bits]uint8 // 1-based index into peers; 0 = empty
	peers []Peer
	refs  []uint8 // how many entries point at peers[i]; 0 = free slot
}

func (f *fingerTable) get(i int) (Peer, bool) {
	k := f.idx[i]
	if k == 0 {
		return Peer{}, false
	}
	return f.peers[k-1], true
}

func (f *fingerTable) set(i int, p Peer) {
	f.clear(i)
	if p.IsZero() {
		return
	}
	free := -1
	for k := range f.peers {
		if f.refs[k] == 0 {
			if free < 0 {
				free = k
			}
			continue
		}
		if f.peers[k].Addr == p.Addr {
			f.idx[i] = uint8(k + 1)
			f.refs[k]++
			return
		}
	}
	if free < 0 {
		// At most 160 distinct peers exist, so an index always fits a byte.
		f.peers = append(f.peers, Peer{})
		f.refs = append(f.refs, 0)
		free = len(f.peers) - 1
	}
	f.peers[free] = p
	f.refs[free] = 1
	f.idx[i] = uint8(free + 1)
}

func (f *fingerTable) clear(i int) {
	k := f.idx[i]
	if k == 0 {
		return
	}
	f.idx[i] = 0
	f.refs[k-1]--
	if f.refs[k-1] == 0 {
		f.peers[k-1] = Peer{}
	}
}

// remove empties every entry that points at addr, e.g. after a failed call.
func (f *fingerTable) remove(addr string) {
	for k := range f.peers {
		if f.refs[k] == 0 || f.peers[k].Addr != addr {
			continue
		}
		for i := range f.idx {
			if f.idx[i] == uint8(k+1) {
				f.idx[i] = 0
			}
		}
		f.refs[k] = 0
		f.peers[k] = Peer{}
	}
}

// distinct lists the peers the table points at, in finger order.
func (f *fingerTable) distinct() []Peer {
	var out []Peer
	var seen [ring.Bits + 1]bool
	for _, k := range f.idx {
		if k != 0 && !seen[k] {
			seen[k] = true
			out = append(out, f.peers[k-1])
		}
	}
	return out
}

// count is the number of distinct peers, without allocating.
func (f *fingerTable) count() int {
	n := 0
	for k := range f.peers {
		if f.refs[k] > 0 {
			n++
		}
	}
	return n
}

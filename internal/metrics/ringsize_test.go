package metrics

import (
	"fmt"
	"math"
	"math/big"
	"slices"
	"testing"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
)

// evenRing returns n peers spaced 2^160/n apart, starting at offset (a
// fraction of the circle), sorted by ID.
func evenRing(n int, offset float64) []chord.Peer {
	circle := new(big.Int).Lsh(big.NewInt(1), ring.Bits)
	start, _ := new(big.Float).Mul(new(big.Float).SetInt(circle), big.NewFloat(offset)).Int(nil)
	out := make([]chord.Peer, n)
	for i := range out {
		v := new(big.Int).Mul(circle, big.NewInt(int64(i)))
		v.Div(v, big.NewInt(int64(n)))
		v.Add(v, start).Mod(v, circle)
		var id ring.ID
		v.FillBytes(id[:])
		out[i] = chord.Peer{ID: id, Addr: fmt.Sprintf("n%d", i)}
	}
	slices.SortFunc(out, func(a, b chord.Peer) int { return a.ID.Cmp(b.ID) })
	return out
}

// stateAt is node i's converged state in ring ps with r successors.
func stateAt(ps []chord.Peer, i, r int, withPred bool) chord.State {
	n := len(ps)
	st := chord.State{Self: ps[i], Member: true}
	if withPred && n > 1 {
		st.Predecessor = ps[(i+n-1)%n]
	}
	for j := 1; j <= min(r, n-1); j++ {
		st.Successors = append(st.Successors, ps[(i+j)%n])
	}
	return st
}

func TestEstimateRingSizeEvenlySpaced(t *testing.T) {
	tests := []struct {
		n, r     int
		offset   float64
		withPred bool
	}{
		{n: 1, r: 8, withPred: true},
		{n: 2, r: 8, withPred: true},
		{n: 5, r: 8, withPred: true},   // the list wraps: exact
		{n: 9, r: 8, withPred: true},   // list ends at the predecessor
		{n: 10, r: 8, withPred: true},  // first ring the estimate is needed for
		{n: 10, r: 8, withPred: false}, // predecessor unknown
		{n: 64, r: 8, withPred: true},
		{n: 1000, r: 8, withPred: true},
		{n: 1000, r: 8, offset: 0.999, withPred: true}, // arcs cross zero
		{n: 100000, r: 16, offset: 0.5, withPred: true},
		{n: 100000, r: 3, offset: 0.9999, withPred: false},
	}
	for _, tt := range tests {
		ps := evenRing(tt.n, tt.offset)
		for _, i := range []int{0, tt.n / 2, tt.n - 1} { // the nodes nearest zero see arcs wrap
			got := EstimateRingSize(stateAt(ps, i, tt.r, tt.withPred))
			if math.Abs(got-float64(tt.n)) > 0.25*float64(tt.n) {
				t.Errorf("N=%d r=%d offset=%v pred=%v node %d: estimate %.1f", tt.n, tt.r, tt.offset, tt.withPred, i, got)
			}
		}
	}
}

// On a ring of hashed addresses, as in production, single estimates vary
// but the median over nodes is close.
func TestEstimateRingSizeHashedIDs(t *testing.T) {
	for _, n := range []int{50, 2000} {
		ps := make([]chord.Peer, n)
		for i := range ps {
			ps[i] = chord.NewPeer(fmt.Sprintf("10.%d.%d.%d:7000", i>>16, (i>>8)&0xff, i&0xff))
		}
		slices.SortFunc(ps, func(a, b chord.Peer) int { return a.ID.Cmp(b.ID) })
		est := make([]float64, n)
		for i := range ps {
			est[i] = EstimateRingSize(stateAt(ps, i, 8, true))
		}
		slices.Sort(est)
		if med := est[n/2]; math.Abs(med-float64(n)) > 0.25*float64(n) {
			t.Errorf("N=%d: median estimate %.1f", n, med)
		}
	}
}

func TestEstimateRingSizeEdgeCases(t *testing.T) {
	self := chord.NewPeer("a:1")
	if got := EstimateRingSize(chord.State{Self: self}); got != 0 {
		t.Errorf("not a member: %v, want 0", got)
	}
	if got := EstimateRingSize(chord.State{Self: self, Member: true}); got != 1 {
		t.Errorf("alone: %v, want 1", got)
	}
	other := chord.NewPeer("b:1")
	st := chord.State{Self: self, Member: true, Predecessor: other, Successors: []chord.Peer{other}}
	if got := EstimateRingSize(st); got != 2 {
		t.Errorf("ring of two: %v, want 2", got)
	}
}

package sim

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
)

// Experiment describes one `chordkv sim` run.
type Experiment struct {
	Nodes   int     // ring size to build
	Lookups int     // lookups to route once the ring has converged
	Seed    uint64  // every random choice follows it
	Fail    float64 // fraction of nodes to crash at once before the lookups
	// Successors is r; zero means chord's default.
	Successors int
	// MaxRounds bounds each convergence phase; zero means 10,000.
	MaxRounds int
}

// HopStats summarises lookup path lengths.
type HopStats struct {
	Mean float64 `json:"mean"`
	P50  int     `json:"p50"`
	P99  int     `json:"p99"`
	Max  int     `json:"max"`
}

// StateStats summarises distinct peers held per node.
type StateStats struct {
	Mean float64 `json:"mean"`
	Max  int     `json:"max"`
}

// Report is the outcome of an Experiment. Its JSON shape is a contract:
// fields may be added, never renamed. It holds no wall-clock figure, so that
// the same seed always prints the same report.
type Report struct {
	Nodes            int        `json:"nodes"`
	Lookups          int        `json:"lookups"`
	Hops             HopStats   `json:"hops"`
	FailedLookups    int        `json:"failed_lookups"`
	RoundsToConverge int        `json:"rounds_to_converge"`
	StatePerNode     StateStats `json:"state_per_node"`

	Seed uint64 `json:"seed"`
	// HopBound is ½·log2(N)+1 for the N the lookups ran on.
	HopBound float64 `json:"hop_bound"`
	// Crashed is how many nodes Fail crashed; RoundsToReconverge is how many
	// rounds the survivors took to repair the ring exactly.
	Crashed            int `json:"crashed"`
	RoundsToReconverge int `json:"rounds_to_reconverge"`
	// WrongOwners counts lookups (inside FailedLookups) that returned an
	// owner other than the oracle's; the rest of FailedLookups returned an
	// error. FailedHops counts dead candidates routed around.
	WrongOwners int    `json:"wrong_owners"`
	FailedHops  int    `json:"failed_hops"`
	Messages    uint64 `json:"messages"`
}

// RunExperiment builds an N-node ring from the real chord code, converges
// it, optionally crashes a fraction of it at once and lets the survivors
// repair the ring, then routes the lookups and checks every owner against
// the oracle.
//
// The ring grows in waves: each wave adds as many nodes as are already
// members, each joining through a random member, with no maintenance in
// between (so joins within a wave are concurrent), and then rounds run
// until every successor list and predecessor is exact. Finally rounds run
// until every finger is exact too.
func RunExperiment(ctx context.Context, e Experiment) (Report, error) {
	if e.Nodes < 1 {
		return Report{}, fmt.Errorf("sim: nodes must be at least 1, got %d", e.Nodes)
	}
	if e.Lookups < 0 || e.Fail < 0 || e.Fail >= 1 {
		return Report{}, fmt.Errorf("sim: need lookups >= 0 and 0 <= fail < 1, got %d and %g", e.Lookups, e.Fail)
	}
	if e.MaxRounds == 0 {
		e.MaxRounds = 10_000
	}
	cfg := chord.LoopbackConfig("")
	if e.Successors > 0 {
		cfg.Successors = e.Successors
	}
	c := NewCluster(e.Seed, cfg)
	rep := Report{Nodes: e.Nodes, Lookups: e.Lookups, Seed: e.Seed}

	c.Create()
	for members := 1; members < e.Nodes; {
		wave := min(members, e.Nodes-members)
		// Newcomers join through members of the ring as it was when the wave
		// began: they join concurrently, unaware of one another.
		existing := c.Members()
		for range wave {
			via := existing[c.Net.Rand().IntN(len(existing))].Self().Addr
			if n, err := c.JoinVia(ctx, via); err != nil {
				return rep, fmt.Errorf("sim: %s joining via %s: %w", n.Self().Addr, via, err)
			}
		}
		members += wave
		rounds, err := c.Converge(ctx, e.MaxRounds, false)
		rep.RoundsToConverge += rounds
		if err != nil {
			return rep, fmt.Errorf("sim: after growing to %d nodes: %w", members, err)
		}
	}
	rounds, err := c.Converge(ctx, e.MaxRounds, true)
	rep.RoundsToConverge += rounds
	if err != nil {
		return rep, fmt.Errorf("sim: fingers: %w", err)
	}
	rep.StatePerNode = stateStats(c.Members())

	if e.Fail > 0 {
		members := c.Members()
		rep.Crashed = int(math.Round(e.Fail * float64(len(members))))
		rep.Crashed = min(rep.Crashed, len(members)-1)
		for _, i := range c.Net.Rand().Perm(len(members))[:rep.Crashed] {
			c.Crash(members[i])
		}
		rounds, err := c.Converge(ctx, e.MaxRounds, false)
		rep.RoundsToReconverge = rounds
		if err != nil {
			return rep, fmt.Errorf("sim: after crashing %d nodes: %w", rep.Crashed, err)
		}
	}

	members := c.Members()
	oracle := c.Oracle()
	rep.HopBound = 0.5*math.Log2(float64(len(members))) + 1
	hops := make([]int, 0, e.Lookups)
	rng := c.Net.Rand()
	for range e.Lookups {
		from := members[rng.IntN(len(members))]
		var id ring.ID
		for i := range id {
			id[i] = byte(rng.Uint32())
		}
		res, err := from.Lookup(ctx, id)
		rep.FailedHops += res.Failed
		switch {
		case err != nil:
			rep.FailedLookups++
		case res.Owner.Addr != oracle.Successor(id).Addr:
			rep.FailedLookups++
			rep.WrongOwners++
		default:
			hops = append(hops, res.Hops)
		}
	}
	rep.Hops = hopStats(hops)
	rep.Messages = c.Net.Calls()
	return rep, nil
}

func hopStats(hops []int) HopStats {
	if len(hops) == 0 {
		return HopStats{}
	}
	slices.Sort(hops)
	sum := 0
	for _, h := range hops {
		sum += h
	}
	pct := func(p float64) int { return hops[int(math.Ceil(p*float64(len(hops))))-1] }
	return HopStats{
		Mean: math.Round(float64(sum)/float64(len(hops))*1000) / 1000,
		P50:  pct(0.50),
		P99:  pct(0.99),
		Max:  hops[len(hops)-1],
	}
}

func stateStats(nodes []*chord.Node) StateStats {
	if len(nodes) == 0 {
		return StateStats{}
	}
	var s StateStats
	sum := 0
	for _, n := range nodes {
		k := n.StateSize()
		sum += k
		s.Max = max(s.Max, k)
	}
	s.Mean = math.Round(float64(sum)/float64(len(nodes))*1000) / 1000
	return s
}

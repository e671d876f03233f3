package sim

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
)

var ctx = context.Background()

func template() chord.Config { return chord.LoopbackConfig("") }

// converge runs rounds until the ring, and with fingers every finger, is
// exact, failing the test after maxRounds.
func converge(t *testing.T, c *Cluster, maxRounds int, fingers bool) int {
	t.Helper()
	rounds, err := c.Converge(ctx, maxRounds, fingers)
	if err != nil {
		t.Fatal(err)
	}
	return rounds
}

// checkLookups routes lookups of random ids from random members and fails on
// any owner that differs from the oracle.
func checkLookups(t *testing.T, c *Cluster, count int) (meanHops float64) {
	t.Helper()
	members, oracle, rng := c.Members(), c.Oracle(), c.Net.Rand()
	total := 0
	for range count {
		from := members[rng.IntN(len(members))]
		id := oracle.Peers()[rng.IntN(oracle.Len())].ID.AddPow2(rng.IntN(160))
		res, err := from.Lookup(ctx, id)
		if err != nil {
			t.Fatalf("lookup from %s: %v", from.Self().Addr, err)
		}
		if want := oracle.Successor(id); res.Owner.Addr != want.Addr {
			t.Fatalf("lookup of %s from %s: owner %s, want %s (path %v)", id.Short(), from.Self().Addr, res.Owner.Addr, want.Addr, chord.Addrs(res.Path))
		}
		total += res.Hops
	}
	return float64(total) / float64(count)
}

// Chord §4.4 Theorem IV.3 / Zave: nodes joining one at a time, with
// maintenance running between joins, converge to the exact ring.
func TestThousandNodesJoiningOneByOneConverge(t *testing.T) {
	c := NewCluster(1, template())
	c.Create()
	for range 999 {
		if _, err := c.JoinRandom(ctx); err != nil {
			t.Fatal(err)
		}
		c.Round(ctx)
	}
	rounds := converge(t, c, 500, true)
	t.Logf("converged %d rounds after the last join", rounds)
	if got := c.Oracle().Len(); got != 1000 {
		t.Fatalf("%d members, want 1000", got)
	}
	checkLookups(t, c, 2000)
}

// Chord §4.4 "concurrent joins" / Zave: 999 nodes join a ring of one at
// once, before any maintenance runs, so all of them start out with the
// same successor; stabilization alone sorts them into the exact ring.
func TestThousandNodesJoiningConcurrentlyConverge(t *testing.T) {
	c := NewCluster(2, template())
	seed := c.Create()
	for range 999 {
		if _, err := c.JoinVia(ctx, seed.Self().Addr); err != nil {
			t.Fatal(err)
		}
	}
	rounds := converge(t, c, 5000, true)
	t.Logf("999 concurrent joins converged in %d rounds", rounds)
	if err := c.Invariants(); err != nil {
		t.Fatal(err)
	}
	checkLookups(t, c, 2000)
}

// Chord §5.3 Theorem IV.5: with successor lists of length r = O(log N),
// the ring survives every node failing with probability 1/4 at once: the
// survivors re-converge exactly and every lookup reaches the right owner.
func TestRingReconvergesAfterQuarterFailAtOnce(t *testing.T) {
	rep, err := RunExperiment(ctx, Experiment{Nodes: 1000, Lookups: 5000, Seed: 3, Fail: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Crashed != 250 {
		t.Fatalf("crashed %d, want 250", rep.Crashed)
	}
	if rep.FailedLookups != 0 {
		t.Fatalf("%d of %d lookups failed (%d wrong owners) after re-convergence", rep.FailedLookups, rep.Lookups, rep.WrongOwners)
	}
	t.Logf("re-converged in %d rounds; %d dead hops routed around", rep.RoundsToReconverge, rep.FailedHops)
}

// Chord §5.1 Theorem IV.2 and §6.3 (Fig. 10): lookups take O(log N) hops,
// about ½·log2 N on average. At 4,096 nodes the mean must be at most
// ½·log2 N + 1 = 7. Hops are deterministic for a seed: this is an assertion
// on path length, not on time.
func TestMeanHopsAt4096Nodes(t *testing.T) {
	rep, err := RunExperiment(ctx, Experiment{Nodes: 4096, Lookups: 20000, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	bound := 0.5*math.Log2(4096) + 1
	if rep.FailedLookups != 0 {
		t.Fatalf("%d lookups failed", rep.FailedLookups)
	}
	if rep.Hops.Mean > bound {
		t.Fatalf("mean hops %.3f > ½·log2 N + 1 = %.1f", rep.Hops.Mean, bound)
	}
	// Chord §4.3: state per node is O(log N); with r = 8 successors and
	// ~log2 N distinct fingers a node holds well under 3·log2 N peers.
	if rep.StatePerNode.Max > 3*12 {
		t.Fatalf("state per node max %d, want O(log N)", rep.StatePerNode.Max)
	}
	t.Logf("hops %+v, state %+v, rounds %d", rep.Hops, rep.StatePerNode, rep.RoundsToConverge)
}

// `chordkv sim` promises: same seed, same output.
func TestExperimentIsDeterministic(t *testing.T) {
	e := Experiment{Nodes: 200, Lookups: 500, Seed: 42, Fail: 0.2}
	a, err := RunExperiment(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RunExperiment(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different reports:\n%+v\n%+v", a, b)
	}
	e.Seed = 43
	c, _ := RunExperiment(ctx, e)
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds gave identical reports; the seed is not used")
	}
}

func TestExperimentRejectsBadInput(t *testing.T) {
	for _, e := range []Experiment{{Nodes: 0}, {Nodes: 5, Fail: 1}, {Nodes: 5, Fail: -0.1}, {Nodes: 5, Lookups: -1}} {
		if _, err := RunExperiment(ctx, e); err == nil {
			t.Errorf("%+v accepted", e)
		}
	}
}

// Zave's inductive invariant: under churn that never kills all r successors
// of a node between repairs, after every single maintenance step there is
// exactly one ordered ring that every member reaches (AtLeastOneRing,
// AtMostOneRing, OrderedRing, ConnectedAppendages). Joins, graceful leaves
// and crashes are interleaved with individual steps in a seeded order, with
// 5% message loss on top.
func TestZaveInvariantsHoldUnderChurn(t *testing.T) {
	cfg := template()
	cfg.Successors = 4
	c := NewCluster(5, cfg)
	c.Create()
	// Zave: correctness needs a stable base of at least r+1 members.
	for range 15 {
		if _, err := c.JoinRandom(ctx); err != nil {
			t.Fatal(err)
		}
		c.Round(ctx)
	}
	converge(t, c, 200, false)
	c.Net.SetLoss(0.05)
	rng := c.Net.Rand()
	for step := range 3000 {
		members := c.Members()
		switch x := rng.IntN(100); {
		case x < 3 && len(members) < 40:
			if _, err := c.JoinRandom(ctx); err != nil {
				t.Logf("step %d: join failed under loss: %v", step, err)
			}
		case x < 5 && len(members) > 10:
			c.Leave(ctx, members[rng.IntN(len(members))])
		case x < 7 && len(members) > 10:
			// Crash one node only when no member has it as its sole live
			// successor: the churn Zave's proof allows.
			victim := members[rng.IntN(len(members))]
			if c.safeToCrash(victim) {
				c.Crash(victim)
			}
		default:
			n := members[rng.IntN(len(members))]
			switch rng.IntN(3) {
			case 0:
				_ = n.Stabilize(ctx)
			case 1:
				_ = n.FixFinger(ctx)
			default:
				_ = n.CheckPredecessor(ctx)
			}
		}
		if err := c.Invariants(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
	c.Net.SetLoss(0)
	converge(t, c, 500, false)
	checkLookups(t, c, 500)
}

// safeToCrash reports whether crashing n leaves every other member with at
// least one live successor-list entry.
func (c *Cluster) safeToCrash(n *chord.Node) bool {
	for _, m := range c.Members() {
		if m == n {
			continue
		}
		live := 0
		for _, s := range m.State().Successors {
			if s.Addr != n.Self().Addr && c.Net.IsUp(s.Addr) {
				live++
			}
		}
		if live < 2 {
			return false
		}
	}
	return true
}

// A partition that cuts the ring in two must not leave it broken once it
// heals: the halves' pointers are repaired back into one exact ring.
func TestRingHealsAfterPartition(t *testing.T) {
	c := NewCluster(6, template())
	c.Create()
	for range 39 {
		if _, err := c.JoinRandom(ctx); err != nil {
			t.Fatal(err)
		}
		c.Round(ctx)
	}
	converge(t, c, 200, true)
	var left, right []string
	for i, p := range c.Oracle().Peers() {
		if i%2 == 0 {
			left = append(left, p.Addr)
		} else {
			right = append(right, p.Addr)
		}
	}
	c.Net.Partition(left, right)
	for range 5 {
		c.Round(ctx)
	}
	// Each half has repaired itself into a ring of its own.
	if errs := c.RingErrors(1); len(errs) == 0 {
		t.Fatal("the partition did not split the ring; the test proves nothing")
	}
	c.Net.Heal()
	c.RingCheckEvery = 5
	converge(t, c, 500, true)
	checkLookups(t, c, 500)
}

// The real maintenance loops (Node.Run) on goroutines, with latency so that
// calls overlap: run under -race, this checks that the node is safe for
// concurrent use and that concurrent joins converge without a driver.
func TestConcurrentNodesConvergeWithRealLoops(t *testing.T) {
	cfg := template()
	cfg.StabilizeInterval = 5 * time.Millisecond
	cfg.FixFingersInterval = 5 * time.Millisecond
	cfg.CheckPredecessorInterval = 10 * time.Millisecond
	cfg.Successors = 4
	c := NewCluster(7, cfg)
	c.Net.SetLatency(100 * time.Microsecond)
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	start := func(n *chord.Node) { wg.Go(func() { n.Run(runCtx) }) }

	seed := c.Create()
	start(seed)
	var joinWG sync.WaitGroup
	var mu sync.Mutex
	for i := range 24 {
		cfgI := cfg
		cfgI.Addr = fmt.Sprintf("conc-%d", i)
		n := c.Net.AddNode(cfgI)
		mu.Lock()
		c.nodes = append(c.nodes, n)
		mu.Unlock()
		joinWG.Go(func() {
			if err := n.Join(ctx, []string{seed.Self().Addr}); err != nil {
				t.Errorf("join: %v", err)
				return
			}
			start(n)
		})
	}
	joinWG.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for len(c.RingErrors(1)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not converged in 30s: %v", c.RingErrors(3))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.Invariants(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkLookup1024(b *testing.B) {
	c := NewCluster(8, template())
	c.Create()
	for c.Oracle().Len() < 1024 {
		existing := c.Members()
		for range min(len(existing), 1024-len(existing)) {
			if _, err := c.JoinVia(ctx, existing[c.Net.Rand().IntN(len(existing))].Self().Addr); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := c.Converge(ctx, 1000, false); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := c.Converge(ctx, 1000, true); err != nil {
		b.Fatal(err)
	}
	members := c.Members()
	rng := c.Net.Rand()
	b.ResetTimer()
	for b.Loop() {
		from := members[rng.IntN(len(members))]
		if _, err := from.Lookup(ctx, members[rng.IntN(len(members))].Self().ID.AddPow2(rng.IntN(160))); err != nil {
			b.Fatal(err)
		}
	}
}

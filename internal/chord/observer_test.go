package chord

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

type recordingObserver struct {
	lookups    []int // hops of each lookup
	lookupErrs int
	stabOK     int
	stabErr    int
}

func (o *recordingObserver) LookupDone(hops int, _ time.Duration, err error) {
	o.lookups = append(o.lookups, hops)
	if err != nil {
		o.lookupErrs++
	}
}

func (o *recordingObserver) StabilizeDone(err error) {
	if err != nil {
		o.stabErr++
	} else {
		o.stabOK++
	}
}

// The observer hears every lookup with its hop count and every member's
// stabilize round with its outcome; a non-member's no-op round is silent.
func TestObserverSeesLookupsAndStabilize(t *testing.T) {
	f := newFakeNet()
	var ns []*Node
	obs := &recordingObserver{}
	for i := range 8 {
		cfg := LoopbackConfig(fmt.Sprintf("10.0.1.%d:7000", i+1))
		cfg.Successors = 2
		if i == 0 {
			cfg.Observer = obs
		}
		n := NewNode(cfg, f)
		f.nodes[cfg.Addr] = n
		ns = append(ns, n)
	}
	watched := ns[0]
	if err := watched.Stabilize(ctx); err != nil {
		t.Fatal(err)
	}
	if obs.stabOK+obs.stabErr != 0 {
		t.Fatalf("a non-member's stabilize was reported: %+v", obs)
	}
	byID := slices.Clone(ns)
	slices.SortFunc(byID, func(a, b *Node) int { return a.self.ID.Cmp(b.self.ID) })
	wire(byID)

	far := byID[(slices.Index(byID, watched)+4)%len(byID)]
	res, err := watched.Lookup(ctx, far.self.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.lookups) != 1 || obs.lookups[0] != res.Hops || res.Hops == 0 {
		t.Fatalf("observed hops %v, lookup took %d", obs.lookups, res.Hops)
	}
	if _, err := watched.Lookup(ctx, watched.self.ID); err != nil {
		t.Fatal(err)
	}
	if obs.lookups[1] != 0 {
		t.Fatalf("a lookup of an id this node owns reported %d hops, want 0", obs.lookups[1])
	}

	if err := watched.Stabilize(ctx); err != nil || obs.stabOK != 1 {
		t.Fatalf("stabilize: err %v, observed %+v", err, obs)
	}
	for _, n := range byID {
		if n != watched {
			f.dead[n.self.Addr] = true
		}
	}
	err = watched.Stabilize(ctx)
	if !errors.Is(err, ErrNoLiveSuccessor) || obs.stabErr != 1 {
		t.Fatalf("stabilize with every peer dead: err %v, observed %+v", err, obs)
	}
	// The failed stabilize tried to rejoin through known peers: lookups too.
	before := obs.lookupErrs
	if _, err := watched.Lookup(ctx, far.self.ID); err == nil || obs.lookupErrs != before+1 {
		t.Fatalf("lookup through a dead ring: err %v, observed %d new failures", err, obs.lookupErrs-before)
	}
}

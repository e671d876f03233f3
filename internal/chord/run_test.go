package chord

import (
	"testing"
	"time"
)

func TestFixPace(t *testing.T) {
	const base, limit = 100 * time.Millisecond, time.Second
	type step struct {
		changed, passEnded bool
		want               time.Duration
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"quiet passes double the pause up to the limit", []step{
			{false, false, base}, {false, true, 2 * base},
			{false, true, 4 * base}, {false, true, 8 * base},
			{false, true, limit}, {false, true, limit},
		}},
		{"a change restores the base pace at once", []step{
			{false, true, 2 * base}, {false, true, 4 * base},
			{true, false, base},
		}},
		{"a pass with a change does not slow down", []step{
			{true, false, base}, {false, true, base},
			{false, false, base}, {false, true, 2 * base},
		}},
		{"a change that ends a pass keeps the base pace", []step{
			{false, true, 2 * base}, {true, true, base}, {false, true, 2 * base},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := fixPace{base: base, max: limit, cur: base}
			for i, s := range tc.steps {
				if got := p.next(s.changed, s.passEnded); got != s.want {
					t.Fatalf("step %d (changed %v, pass ended %v): pause %v, want %v", i, s.changed, s.passEnded, got, s.want)
				}
			}
		})
	}
}

// TestFixFingerReportsChangesAndPasses checks what Run's pacing relies on:
// on a stable ring a second full pass over the table changes nothing, and
// the last run of each pass says it ended the pass.
func TestFixFingerReportsChangesAndPasses(t *testing.T) {
	nodes := ringOf(newFakeNet(), 8, 3)
	wire(nodes)
	n := nodes[0]
	pass := func() (changed bool, steps int) {
		t.Helper()
		for steps = 1; steps <= 200; steps++ {
			ch, ended, err := n.fixFinger(ctx)
			if err != nil {
				t.Fatal(err)
			}
			changed = changed || ch
			if ended {
				return changed, steps
			}
		}
		t.Fatal("no pass over the finger table ended in 200 steps")
		return false, 0
	}
	if changed, _ := pass(); !changed {
		t.Error("the first pass over an empty finger table changed nothing")
	}
	if changed, steps := pass(); changed || steps > 16 {
		t.Errorf("a pass on a stable 8-node ring: changed %v in %d steps; want no change in about log2(8) steps", changed, steps)
	}
}

// TestCheckPredecessorTrustsARecentNotify: a predecessor that notified since
// the last check is alive enough to skip one ping, and a crash is still seen
// at the following check (Zave 2017 §4: dead entries are never trusted for
// longer than the check that finds them).
func TestCheckPredecessorTrustsARecentNotify(t *testing.T) {
	f := newFakeNet()
	nodes := ringOf(f, 3, 2)
	wire(nodes)
	n, pred := nodes[1], nodes[0]
	n.Rectify(ctx, pred.self) // pred's stabilize notifies n
	f.dead[pred.self.Addr] = true
	if err := n.CheckPredecessor(ctx); err != nil || n.Neighbors().Predecessor.Addr != pred.self.Addr {
		t.Fatalf("first check after a notify: %v, predecessor %q; want no ping and %q kept", err, n.Neighbors().Predecessor.Addr, pred.self.Addr)
	}
	if err := n.CheckPredecessor(ctx); err == nil || !n.Neighbors().Predecessor.IsZero() {
		t.Fatalf("second check: %v, predecessor %q; want the dead predecessor dropped", err, n.Neighbors().Predecessor.Addr)
	}
}

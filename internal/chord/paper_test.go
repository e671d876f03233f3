package chord

// Tests of the maintenance rules, each citing what it checks:
//   [Chord] Stoica et al., "Chord: A Scalable Peer-to-peer Lookup Service",
//           SIGCOMM 2001 / ToN 2003 (sections as in the ToN version).
//   [Zave]  Zave, "Reasoning about Identifier Spaces: How to Make Chord
//           Correct", IEEE TSE 2017, the operations of the correct protocol.
// The transport here is a fake of one layer: direct calls plus a dead set.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"

	"github.com/chordkv/chordkv/internal/ring"
)

var errDead = errors.New("fake: peer dead")

type fakeNet struct {
	nodes map[string]*Node
	dead  map[string]bool
	calls int
	// beforeNeighbors, when set, runs as a GetNeighbors call reaches its
	// target, before the target answers: a way to make things happen
	// while a call is in flight.
	beforeNeighbors func(to Peer)
}

func newFakeNet() *fakeNet { return &fakeNet{nodes: map[string]*Node{}, dead: map[string]bool{}} }

func (f *fakeNet) get(to Peer) (*Node, error) {
	f.calls++
	n, ok := f.nodes[to.Addr]
	if !ok || f.dead[to.Addr] {
		return nil, fmt.Errorf("%s: %w", to.Addr, errDead)
	}
	return n, nil
}

func (f *fakeNet) Ping(_ context.Context, to Peer) error { _, err := f.get(to); return err }
func (f *fakeNet) GetNeighbors(_ context.Context, to Peer) (Neighbors, error) {
	n, err := f.get(to)
	if err != nil {
		return Neighbors{}, err
	}
	if hook := f.beforeNeighbors; hook != nil {
		hook(to)
	}
	return n.Neighbors(), nil
}
func (f *fakeNet) Notify(ctx context.Context, to, c Peer) error {
	n, err := f.get(to)
	if err == nil {
		n.Rectify(ctx, c)
	}
	return err
}
func (f *fakeNet) FindSuccessorStep(_ context.Context, to Peer, id ring.ID) (Step, error) {
	n, err := f.get(to)
	if err != nil {
		return Step{}, err
	}
	return n.FindSuccessorStep(id), nil
}
func (f *fakeNet) Leave(_ context.Context, to Peer, notice LeaveNotice) error {
	n, err := f.get(to)
	if err == nil {
		n.HandleLeave(notice)
	}
	return err
}

// ringOf makes k nodes with r-entry successor lists and returns them sorted
// by ID, so tests can speak of "node i" in ring order.
func ringOf(f *fakeNet, k, r int) []*Node {
	var out []*Node
	for i := range k {
		cfg := LoopbackConfig(fmt.Sprintf("10.0.0.%d:7000", i+1))
		cfg.Successors = r
		n := NewNode(cfg, f)
		f.nodes[cfg.Addr] = n
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].self.ID.Cmp(out[j].self.ID) < 0 })
	return out
}

// wire sets every node's pointers to the correct ring, as if converged.
func wire(nodes []*Node) {
	k := len(nodes)
	for i, n := range nodes {
		n.member = true
		n.pred = nodes[(i+k-1)%k].self
		n.succs = nil
		for j := 1; j <= min(n.cfg.Successors, k-1); j++ {
			n.succs = append(n.succs, nodes[(i+j)%k].self)
		}
		n.listFull = true
	}
}

func peers(nodes ...*Node) []Peer {
	out := make([]Peer, len(nodes))
	for i, n := range nodes {
		out[i] = n.self
	}
	return out
}

func wantSuccs(t *testing.T, n *Node, want ...*Node) {
	t.Helper()
	if got := n.Neighbors().Successors; !slices.Equal(Addrs(got), Addrs(peers(want...))) {
		t.Fatalf("%s successors = %v, want %v", n.self.Addr, Addrs(got), Addrs(peers(want...)))
	}
}

var ctx = context.Background()

// [Zave] join: a new node takes its successor s by lookup and its whole
// successor list from s, so it is a full member at once. [Chord] §4.4 set
// only the successor, which left a newcomer one failure away from losing
// the ring.
func TestZaveJoinCopiesWholeSuccessorList(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 6, 3)
	wire(slices.Delete(slices.Clone(ns), 2, 3)) // ns[2] is the newcomer
	if err := ns[2].Join(ctx, []string{ns[4].self.Addr}); err != nil {
		t.Fatal(err)
	}
	wantSuccs(t, ns[2], ns[3], ns[4], ns[5])
	if st := ns[2].State(); !st.Member || st.Ready || !st.Predecessor.IsZero() {
		t.Fatalf("after join: %+v, want a member, not yet ready, predecessor unknown", st)
	}
	// Ready once a stabilize against the live successor confirms the list.
	if err := ns[2].Stabilize(ctx); err != nil {
		t.Fatal(err)
	}
	if !ns[2].State().Ready {
		t.Fatal("not ready after its successor confirmed its list")
	}
	// The join notified the successor, which rectified to the newcomer.
	if got := ns[3].Neighbors().Predecessor; got.Addr != ns[2].self.Addr {
		t.Fatalf("successor's predecessor = %s, want the newcomer", got)
	}
}

// [Chord] §4.4 stabilize + [Zave] stabilize: the successor's predecessor,
// when it lies between, becomes the new successor and the list is rebuilt
// from its list: prepend it and drop the last entry.
func TestZaveStabilizeAdoptsLiveCloserPredecessor(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 6, 3)
	wire(ns)
	// ns[0] has not heard of ns[1] yet; ns[2] has (ns[1] notified it).
	ns[0].succs = peers(ns[2], ns[3], ns[4])
	if err := ns[0].Stabilize(ctx); err != nil {
		t.Fatal(err)
	}
	wantSuccs(t, ns[0], ns[1], ns[2], ns[3])
}

// [Zave]: the original stabilize adopted the successor's predecessor even
// when it was dead, which can break the ring. The correct one adopts it only
// if it answers.
func TestZaveStabilizeRefusesDeadPredecessorOfSuccessor(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 6, 3)
	wire(ns)
	ns[0].succs = peers(ns[2], ns[3], ns[4])
	f.dead[ns[1].self.Addr] = true // ns[2] still names it as predecessor
	if err := ns[0].Stabilize(ctx); err != nil {
		t.Fatal(err)
	}
	wantSuccs(t, ns[0], ns[2], ns[3], ns[4])
}

// [Chord] §5.2 successor lists + [Zave] "dead entries are skipped": a dead
// first successor is skipped and the list is rebuilt from the first live one.
func TestZaveStabilizeSkipsDeadSuccessors(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 7, 3)
	wire(ns)
	f.dead[ns[1].self.Addr] = true
	f.dead[ns[2].self.Addr] = true
	// ns[3] still lists its dead predecessor until it checks it.
	if err := ns[0].Stabilize(ctx); err != nil {
		t.Fatal(err)
	}
	wantSuccs(t, ns[0], ns[3], ns[4], ns[5])
	if got := ns[3].Neighbors().Predecessor; got.Addr != ns[0].self.Addr {
		t.Fatalf("ns[3] predecessor = %s, want ns[0] (rectify replaces a dead predecessor)", got)
	}
}

// [Zave] rectify, the corrected notified: adopt the notifier when there is
// no predecessor, when it lies strictly between the predecessor and this
// node, or when the predecessor is dead; otherwise keep the predecessor.
func TestZaveRectify(t *testing.T) {
	tests := []struct {
		name     string
		pred     int // index into the ring, -1 for none
		notifier int
		predDead bool
		wantPred int
	}{
		{"no predecessor: adopt", -1, 2, false, 2},
		{"notifier between: adopt", 1, 2, false, 2},
		{"notifier before live predecessor: keep", 2, 1, false, 2},
		{"notifier before dead predecessor: adopt", 2, 1, true, 1},
		{"same as predecessor: keep", 2, 2, false, 2},
		{"notifier is self: ignore", 2, 3, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeNet()
			ns := ringOf(f, 5, 3)
			wire(ns)
			n := ns[3]
			n.pred = Peer{}
			if tt.pred >= 0 {
				n.pred = ns[tt.pred].self
			}
			if tt.predDead {
				f.dead[n.pred.Addr] = true
			}
			n.Rectify(ctx, ns[tt.notifier].self)
			if got := n.Neighbors().Predecessor; got.Addr != ns[tt.wantPred].self.Addr {
				t.Fatalf("predecessor = %s, want %s", got, ns[tt.wantPred].self)
			}
		})
	}
}

// [Chord] §4.4 check_predecessor: a dead predecessor is forgotten so that
// the next notifier is accepted.
func TestCheckPredecessorForgetsDeadPredecessor(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 4, 3)
	wire(ns)
	if err := ns[2].CheckPredecessor(ctx); err != nil {
		t.Fatalf("live predecessor: %v", err)
	}
	f.dead[ns[1].self.Addr] = true
	if err := ns[2].CheckPredecessor(ctx); err == nil {
		t.Fatal("dead predecessor: no error")
	}
	if p := ns[2].Neighbors().Predecessor; !p.IsZero() {
		t.Fatalf("predecessor = %s, want none", p)
	}
}

// [Zave] minimum ring size: a ring smaller than r+1 cannot fill r distinct
// entries; lists wrap round to the node itself and stop there, and the node
// still counts as having a full list.
func TestSuccessorListWrapsInSmallRing(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 3, 8)
	wire(ns)
	for range 2 {
		for _, n := range ns {
			if err := n.Stabilize(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantSuccs(t, ns[0], ns[1], ns[2])
	if !ns[0].State().Ready {
		t.Fatal("a node holding the whole small ring should be ready")
	}
}

// [Chord] §4.4: a ring of one learns its first successor from the
// predecessor that notified it, which is how a second node gets in.
func TestSecondNodeJoinsRingOfOne(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 2, 8)
	ns[0].Create()
	if err := ns[1].Join(ctx, []string{ns[0].self.Addr}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for _, n := range ns {
			if err := n.Stabilize(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantSuccs(t, ns[0], ns[1])
	wantSuccs(t, ns[1], ns[0])
	for i, n := range ns {
		if p := n.Neighbors().Predecessor; p.Addr != ns[1-i].self.Addr {
			t.Fatalf("node %d predecessor = %s", i, p)
		}
	}
}

// [Chord] §4.3: finger i is successor(n + 2^i). One lookup fills a whole
// run of entries, so a full pass needs about as many calls as there are
// distinct fingers, not 160.
func TestFixFingerMatchesDefinition(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 64, 4)
	wire(ns)
	sorted := peers(ns...)
	successorOf := func(id ring.ID) Peer {
		for _, p := range sorted {
			if p.ID.Cmp(id) >= 0 {
				return p
			}
		}
		return sorted[0]
	}
	n := ns[10]
	calls := 0
	for {
		if err := n.FixFinger(ctx); err != nil {
			t.Fatal(err)
		}
		calls++
		if n.nextFinger == 0 {
			break
		}
	}
	for i := range ring.Bits {
		want := successorOf(n.self.ID.AddPow2(i))
		if got, ok := n.Finger(i); !ok || got.Addr != want.Addr {
			t.Fatalf("finger %d = %s, want %s", i, got, want)
		}
	}
	if distinct := len(n.State().Fingers); calls != distinct {
		t.Fatalf("full pass took %d calls for %d distinct fingers", calls, distinct)
	}
	if n.fingers.count() > 12 {
		t.Fatalf("64-node ring: %d distinct fingers, want about log2(64)", n.fingers.count())
	}
}

// [Chord] §5.3 "a lookup routes around failures": when the best hop is
// dead the lookup takes the next candidate and still finds the owner.
func TestLookupRoutesAroundDeadHop(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 32, 4)
	wire(ns)
	for _, n := range ns {
		for n.FixFinger(ctx) == nil && n.nextFinger != 0 {
		}
	}
	target := ns[20].self.ID // owned by ns[20]
	before, err := ns[0].Lookup(ctx, target)
	if err != nil || before.Owner.Addr != ns[20].self.Addr {
		t.Fatalf("healthy lookup: %+v, %v", before, err)
	}
	// Kill the first intermediate hop; ns[20] itself stays up.
	hop := before.Path[1]
	if hop.Addr == ns[20].self.Addr {
		t.Skip("lookup went straight to the owner")
	}
	f.dead[hop.Addr] = true
	after, err := ns[0].Lookup(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if after.Owner.Addr != ns[20].self.Addr || after.Failed == 0 {
		t.Fatalf("lookup around dead %s: owner %s, failed %d", hop.Addr, after.Owner, after.Failed)
	}
	if slices.ContainsFunc(after.Path, func(p Peer) bool { return p.Addr == hop.Addr }) {
		t.Fatalf("path %v goes through the dead hop", Addrs(after.Path))
	}
	if after.Hops != len(after.Path)-1 || after.Path[len(after.Path)-1].Addr != ns[20].self.Addr {
		t.Fatalf("path %v and hops %d disagree", Addrs(after.Path), after.Hops)
	}
}

// Every lookup is bounded: with every other node dead it fails with
// ErrLookupFailed after at most MaxLookupAttempts calls.
func TestLookupIsBoundedWhenEverythingIsDead(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 32, 4)
	wire(ns)
	for _, n := range ns[1:] {
		f.dead[n.self.Addr] = true
	}
	f.calls = 0
	_, err := ns[0].Lookup(ctx, ns[16].self.ID)
	if !errors.Is(err, ErrLookupFailed) {
		t.Fatalf("err = %v, want ErrLookupFailed", err)
	}
	if f.calls > ns[0].cfg.MaxLookupAttempts {
		t.Fatalf("%d calls, bound is %d", f.calls, ns[0].cfg.MaxLookupAttempts)
	}
}

// A graceful leave splices the node out of its neighbours at once.
func TestLeaveSplicesNeighbours(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 6, 3)
	wire(ns)
	ns[2].Leave(ctx)
	delete(f.nodes, ns[2].self.Addr)
	wantSuccs(t, ns[1], ns[3], ns[4])
	if p := ns[3].Neighbors().Predecessor; p.Addr != ns[1].self.Addr {
		t.Fatalf("successor's predecessor = %s, want %s", p, ns[1].self)
	}
	if ns[2].IsMember() {
		t.Fatal("a node that left still calls itself a member")
	}
}

// A stabilize round in flight when the leave notice arrives fetched its
// list before the splice: here the predecessor asks the leaving node itself,
// which still answers while it shuts down. The round must not put the node
// back; without the leave record it did, and a read at consistency all then
// waited on a replica that was gone (CI saw it once).
func TestLeaveOutlivesAStabilizeInFlight(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 6, 3)
	wire(ns)
	leaving := ns[2]
	f.beforeNeighbors = func(to Peer) {
		if to.Addr == leaving.self.Addr && leaving.IsMember() {
			leaving.Leave(ctx)
		}
	}
	if err := ns[1].Stabilize(ctx); err != nil {
		t.Fatal(err)
	}
	f.beforeNeighbors = nil
	wantSuccs(t, ns[1], ns[3], ns[4], ns[5])
	delete(f.nodes, leaving.self.Addr)
	// The node two back learns of the leave only from its successor's list.
	if err := ns[0].Stabilize(ctx); err != nil {
		t.Fatal(err)
	}
	wantSuccs(t, ns[0], ns[1], ns[3], ns[4])
}

// Leave notices come from the network: a flood of them is spliced out but
// remembered only up to maxLeft, and each is forgotten after leftRounds.
func TestLeaveRecordsAreBounded(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 3, 2)
	wire(ns)
	for i := range 3 * maxLeft {
		ns[0].HandleLeave(LeaveNotice{Leaving: NewPeer(fmt.Sprintf("10.9.%d.%d:7000", i/250, i%250))})
	}
	if got := len(ns[0].left); got != maxLeft {
		t.Fatalf("%d leaves remembered, want %d", got, maxLeft)
	}
	for range leftRounds {
		if err := ns[0].Stabilize(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(ns[0].left); got != 0 {
		t.Fatalf("%d leaves still remembered after %d rounds", got, leftRounds)
	}
	wantSuccs(t, ns[0], ns[1], ns[2])
}

// A node that left and comes back under the same address is a successor
// again within the rounds its leave is remembered, or at once where it
// notifies.
func TestNodeBackAfterLeaveIsReadmitted(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 6, 3)
	wire(ns)
	ns[2].Leave(ctx)
	restarted := NewNode(ns[2].cfg, f)
	f.nodes[restarted.self.Addr] = restarted
	if err := restarted.Join(ctx, []string{ns[0].self.Addr}); err != nil {
		t.Fatal(err)
	}
	ring := []*Node{ns[0], ns[1], restarted, ns[3], ns[4], ns[5]}
	for range leftRounds + 2 {
		for _, n := range ring {
			if err := n.Stabilize(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantSuccs(t, ns[0], ns[1], restarted, ns[3])
	wantSuccs(t, ns[1], restarted, ns[3], ns[4])
	if p := ns[3].Neighbors().Predecessor; p.Addr != restarted.self.Addr {
		t.Fatalf("successor's predecessor = %s, want the node that came back", p.Addr)
	}
}

// [Zave] "a node that restarts with the same address keeps its ID": when
// the ring still lists the old incarnation, joining takes the entries after
// it rather than pointing at itself.
func TestRestartedNodeRejoinsWithSameID(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 6, 3)
	wire(ns)
	old := ns[3]
	cfg := old.cfg
	restarted := NewNode(cfg, f)
	f.nodes[cfg.Addr] = restarted
	if restarted.self.ID != old.self.ID {
		t.Fatal("same address, different ID")
	}
	if err := restarted.Join(ctx, []string{ns[0].self.Addr}); err != nil {
		t.Fatal(err)
	}
	wantSuccs(t, restarted, ns[4], ns[5], ns[0])
}

func TestJoinFailsClearlyWithNoLiveSeed(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 3, 3)
	f.dead[ns[1].self.Addr] = true
	err := ns[0].Join(ctx, []string{ns[0].self.Addr, ns[1].self.Addr, ""})
	if !errors.Is(err, ErrJoinFailed) {
		t.Fatalf("err = %v, want ErrJoinFailed", err)
	}
	if ns[0].IsMember() {
		t.Fatal("failed join left the node a member")
	}
}

// When every successor is dead the node rejoins through its predecessor or
// fingers instead of staying cut off.
func TestStabilizeRejoinsWhenAllSuccessorsDead(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 8, 2)
	wire(ns)
	for _, n := range ns {
		for n.FixFinger(ctx) == nil && n.nextFinger != 0 {
		}
	}
	f.dead[ns[1].self.Addr] = true
	f.dead[ns[2].self.Addr] = true
	if err := ns[0].Stabilize(ctx); err != nil {
		t.Fatal(err)
	}
	if s := ns[0].Successor(); f.dead[s.Addr] {
		t.Fatalf("successor %s is dead", s)
	}
}

func TestFingerTableCompaction(t *testing.T) {
	var ft fingerTable
	a, b := NewPeer("a:1"), NewPeer("b:1")
	for i := range ring.Bits {
		ft.set(i, a)
	}
	ft.set(159, b)
	if ft.count() != 2 || len(ft.peers) != 2 {
		t.Fatalf("count %d, slots %d", ft.count(), len(ft.peers))
	}
	ft.remove("a:1")
	if ft.count() != 1 {
		t.Fatalf("after remove: count %d", ft.count())
	}
	ft.set(0, NewPeer("c:1")) // reuses the freed slot
	if len(ft.peers) != 2 {
		t.Fatalf("slots %d, want the freed one reused", len(ft.peers))
	}
	if got := Addrs(ft.distinct()); !slices.Equal(got, []string{"c:1", "b:1"}) {
		t.Fatalf("distinct = %v", got)
	}
}

// [Chord] §4.3 closest_preceding_finger: a candidate qualifies only strictly
// inside (n, id). A node whose ID is id itself is id's successor, not a
// predecessor of it: sending the lookup there first costs a hop round the
// ring back to it.
func TestClosestPrecedingIsStrictlyBeforeTheID(t *testing.T) {
	f := newFakeNet()
	ns := ringOf(f, 64, 4)
	wire(ns)
	n := ns[0]
	for {
		if err := n.FixFinger(ctx); err != nil {
			t.Fatal(err)
		}
		if n.nextFinger == 0 {
			break
		}
	}
	asked := 0
	for _, m := range ns[2:] { // ids past n's successor: not answered at once
		step := n.FindSuccessorStep(m.self.ID)
		if step.Done {
			t.Fatalf("lookup of %s answered at once by %s", m.self.Addr, n.self.Addr)
		}
		asked++
		if slices.ContainsFunc(step.Next, func(p Peer) bool { return p.Addr == m.self.Addr }) {
			t.Errorf("lookup of %s's own ID routes through %s itself: %v", m.self.Addr, m.self.Addr, Addrs(step.Next))
		}
	}
	if asked == 0 {
		t.Fatal("no lookup checked")
	}
}

package kv

// Read leases (lease.go). The safety argument is the one of Gray and
// Cheriton, "Leases: An Efficient Fault-Tolerant Mechanism for Distributed
// File Cache Consistency" (SOSP 1989), §2: while a lease is in force, the
// grantor lets no write past that the holder would not see; the holder stops
// relying on it before any grantor's copy of it expires. The tests below
// check each half against a holder and real grantor Nodes over fake peers.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// manualClock is a clock that moves only when told.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const testLease = 3 * time.Second

// newLeasedNodes is newTestNode with read leases on and the two other
// replicas real Nodes that grant them, every node on clock.
func newLeasedNodes(t *testing.T) (holder *Node, peers *fakePeers, others []chord.Peer, grantors []*Node, clock *manualClock) {
	t.Helper()
	// Renewed whether or not anything reads (ReadLeaseIdle 0): these tests
	// call RenewLease to check the lease's rules; TestLease*Idle* check
	// its idling.
	holder, peers, others = newTestNodeWith(t, func(c *Config) { c.ReadLease, c.ReadLeaseIdle = testLease, 0 })
	clock = &manualClock{now: time.Unix(1_000_000, 0)}
	holder.now = clock.Now
	peers.grantors = map[string]*Node{}
	gcfg := DefaultConfig()
	gcfg.ReadLease = testLease
	for _, p := range others {
		g := New(gcfg, fakeRing{self: p}, peers.stores[p.Addr], peers, store.NewClock(time.Now))
		g.now = clock.Now
		peers.grantors[p.Addr] = g
		grantors = append(grantors, g)
	}
	return holder, peers, others, grantors, clock
}

func TestArcsOverlap(t *testing.T) {
	id := func(b byte) ring.ID { var x ring.ID; x[0] = b; return x }
	tests := []struct {
		name           string
		a1, b1, a2, b2 byte
		want           bool
	}{
		{"disjoint", 10, 20, 30, 40, false},
		{"touching ends do not overlap", 10, 20, 20, 30, false},
		{"nested", 10, 40, 20, 30, true},
		{"crossing", 10, 30, 20, 40, true},
		{"same", 10, 20, 10, 20, true},
		{"one wraps past zero, the other inside it", 200, 20, 5, 10, true},
		{"one wraps past zero, the other outside it", 200, 20, 50, 60, false},
		{"both wrap", 200, 20, 250, 30, true},
		{"the whole ring overlaps anything", 7, 7, 50, 60, true},
	}
	for _, tt := range tests {
		for _, swap := range []bool{false, true} {
			a1, b1, a2, b2 := id(tt.a1), id(tt.b1), id(tt.a2), id(tt.b2)
			if swap {
				a1, b1, a2, b2 = a2, b2, a1, b1
			}
			if got := arcsOverlap(a1, b1, a2, b2); got != tt.want {
				t.Errorf("%s (swapped %v): arcsOverlap = %v, want %v", tt.name, swap, got, tt.want)
			}
		}
	}
}

// A replica grants one holder at a time per stretch of the ring: another
// node's overlapping request is refused until the first grant expires; the
// same holder renews or replaces its own, or releases it with a duration of
// 0; bad requests are InvalidArgument.
func TestGrantLease(t *testing.T) {
	_, _, _, grantors, clock := newLeasedNodes(t)
	g := grantors[0]
	id := func(b byte) ring.ID { var x ring.ID; x[0] = b; return x }
	h1, h2 := chord.NewPeer("h1:1"), chord.NewPeer("h2:1")
	steps := []struct {
		name    string
		advance time.Duration
		holder  chord.Peer
		from    byte
		to      byte
		d       time.Duration
		want    error
	}{
		{"first grant", 0, h1, 10, 20, time.Second, nil},
		{"the holder renews", 0, h1, 10, 20, time.Second, nil},
		{"another holder, overlapping", 0, h2, 15, 30, time.Second, ErrLeased},
		{"another holder, disjoint", 0, h2, 20, 30, time.Second, nil},
		{"the first holder grows into the second's range", 0, h1, 10, 25, time.Second, ErrLeased},
		{"the first holder shrinks its own", 0, h1, 12, 20, time.Second, nil},
		{"after both expire anything goes", 1001 * time.Millisecond, h2, 0, 255, time.Second, nil},
		{"negative duration", 0, h1, 1, 2, -time.Second, ErrInvalidArgument},
		{"h1 takes a range once h2's has expired", 1001 * time.Millisecond, h1, 100, 120, time.Second, nil},
		{"h2 cannot have it", 0, h2, 110, 130, time.Second, ErrLeased},
		{"h1 releases it", 0, h1, 100, 120, 0, nil},
		{"now h2 can", 0, h2, 110, 130, time.Second, nil},
		{"too long", 0, h1, 1, 2, 2 * maxReadLease, ErrInvalidArgument},
		{"longer than the grantor's own lease", 0, h1, 1, 2, testLease + time.Millisecond, ErrInvalidArgument},
		{"no holder", 0, chord.Peer{}, 1, 2, time.Second, ErrInvalidArgument},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		err := g.GrantLease(s.holder, id(s.from), id(s.to), s.d)
		if (s.want == nil && err != nil) || (s.want != nil && !errors.Is(err, s.want)) {
			t.Errorf("%s: GrantLease = %v, want %v", s.name, err, s.want)
		}
	}
}

// §2, the grantor's half: while a replica's grant is in force, it refuses
// client writes of the leased range that another node coordinates, its own
// included, and accepts the holder's and repair traffic's. After the grant
// expires it accepts all again.
func TestGrantorRefusesWritesOthersCoordinate(t *testing.T) {
	holder, _, others, grantors, clock := newLeasedNodes(t)
	g := grantors[0]
	if err := g.GrantLease(holder.self, holder.self.ID, holder.self.ID, time.Second); err != nil { // the whole ring
		t.Fatal(err)
	}
	entry := func(v string) []store.Entry {
		return []store.Entry{{Key: []byte("k"), Value: []byte(v), Version: store.Version{HLC: uint64(len(v)), Node: others[1].ID}}}
	}
	if _, err := g.ApplyFrom(others[1], entry("a")); !errors.Is(err, ErrLeased) {
		t.Errorf("write coordinated by another node: %v, want ErrLeased", err)
	}
	if _, err := g.ApplyFrom(others[1], entry("a")); err == nil || !contains(err.Error(), holder.self.Addr) {
		t.Errorf("the refusal should name the holder %s: %v", holder.self.Addr, err)
	}
	if _, err := g.Put(ctx, []byte("k"), []byte("v"), One, true); !errors.Is(err, ErrLeased) {
		t.Errorf("a write the grantor coordinates itself: %v, want ErrLeased", err)
	}
	if _, found, _ := g.local.Get([]byte("k")); found {
		t.Fatal("a refused write reached the grantor's store")
	}
	if n, err := g.ApplyFrom(holder.self, entry("bb")); err != nil || n != 1 {
		t.Errorf("write coordinated by the holder: %d, %v, want 1 applied", n, err)
	}
	if n, err := g.ApplyLocal(entry("ccc")); err != nil || n != 1 {
		t.Errorf("repair traffic: %d, %v, want 1 applied", n, err)
	}
	clock.Advance(time.Second + time.Millisecond)
	if n, err := g.ApplyFrom(others[1], entry("dddd")); err != nil || n != 1 {
		t.Errorf("write coordinated by another node after the grant expired: %d, %v", n, err)
	}
}

// The holder's half: with every replica's grant, a quorum read reads no
// other replica; at all, or once the lease ran out (renewals failing), it
// reads them again.
func TestQuorumReadUnderLeaseReadsNoOtherReplica(t *testing.T) {
	holder, peers, others, _, clock := newLeasedNodes(t)
	if _, err := holder.Put(ctx, []byte("k"), []byte("v"), Quorum, false); err != nil {
		t.Fatal(err)
	}
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	if !holder.LeaseHeld() {
		t.Fatal("no lease after every replica granted it")
	}
	readsOfOthers := func() int {
		peers.mu.Lock()
		defer peers.mu.Unlock()
		return peers.reads[others[0].Addr] + peers.reads[others[1].Addr]
	}
	before := readsOfOthers()
	if e, err := holder.Get(ctx, []byte("k"), Quorum, false); err != nil || string(e.Value) != "v" {
		t.Fatalf("quorum read under the lease: %q, %v", e.Value, err)
	}
	if got := readsOfOthers() - before; got != 0 {
		t.Errorf("quorum read under the lease read %d other replicas, want 0", got)
	}
	if _, err := holder.Get(ctx, []byte("k"), All, false); err != nil {
		t.Fatal(err)
	}
	if got := readsOfOthers() - before; got != 2 {
		t.Errorf("read at all under the lease read %d other replicas, want 2", got)
	}
	// The holder stops a drift margin before the grantors' grants end.
	clock.Advance(testLease - testLease/leaseDriftMargin)
	if holder.LeaseHeld() {
		t.Error("lease still held at its end")
	}
	before = readsOfOthers()
	if _, err := holder.Get(ctx, []byte("k"), Quorum, false); err != nil {
		t.Fatal(err)
	}
	if got := readsOfOthers() - before; got != 1 {
		t.Errorf("quorum read after the lease ended read %d other replicas, want 1", got)
	}
}

// Every replica the read would ask must grant: with one of them down there
// is no lease, and quorum reads ask the live one.
func TestLeaseNeedsEveryReplicasGrant(t *testing.T) {
	holder, peers, others, grantors, _ := newLeasedNodes(t)
	peers.setDead(others[1], true)
	if err := holder.RenewLease(ctx); err == nil {
		t.Fatal("lease renewed with a replica down")
	}
	if holder.LeaseHeld() {
		t.Fatal("lease held without every replica's grant")
	}
	peers.setDead(others[1], false)
	// Another node holds an overlapping lease at one replica: refused too.
	if err := grantors[1].GrantLease(others[0], holder.self.ID, holder.self.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := holder.RenewLease(ctx); !errors.Is(err, ErrLeased) {
		t.Fatalf("RenewLease with a conflicting grant: %v, want ErrLeased", err)
	}
	if holder.LeaseHeld() {
		t.Fatal("lease held over a replica that granted it to another node")
	}
}

// A lease starts with a catch-up: a write that reached the other replicas
// but not the holder (coordinated elsewhere before the grants) is in the
// holder's store before it reads alone.
func TestNewLeaseCatchesUpFirst(t *testing.T) {
	holder, peers, others, _, _ := newLeasedNodes(t)
	missed := store.Entry{Key: []byte("k"), Value: []byte("written elsewhere"), Version: store.Version{HLC: store.HLCAt(time.Now()), Node: others[0].ID}}
	for _, p := range others {
		if _, err := peers.stores[p.Addr].Apply(missed); err != nil {
			t.Fatal(err)
		}
	}
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	e, err := holder.Get(ctx, []byte("k"), Quorum, false)
	if err != nil || string(e.Value) != "written elsewhere" {
		t.Fatalf("read alone after the lease began: %q, %v; want the write the other replicas had", e.Value, err)
	}
}

// The catch-up only takes: an entry the holder has and a grantor lacks stays
// missing there, for anti-entropy to send. Sending it would race a joiner
// that becomes a grantor while it is still pulling its ranges (e2e
// TestJoinMovesEachKeyOnce saw the keys moved twice).
func TestLeaseCatchUpSendsNothing(t *testing.T) {
	holder, peers, others, _, _ := newLeasedNodes(t)
	onlyHere := store.Entry{Key: []byte("k"), Value: []byte("only on the holder"), Version: store.Version{HLC: store.HLCAt(time.Now()), Node: holder.self.ID}}
	if _, err := holder.ApplyLocal([]store.Entry{onlyHere}); err != nil {
		t.Fatal(err)
	}
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	if !holder.LeaseHeld() {
		t.Fatal("no lease after a renewal every grantor granted")
	}
	for _, p := range others {
		if _, found, _ := peers.stores[p.Addr].Get([]byte("k")); found {
			t.Errorf("the catch-up sent %s the holder's entry; it should only take", p.Addr)
		}
	}
}

// A write whose local copy failed may still be acknowledged by the other
// two replicas; the coordinator's store then lacks it, so the lease ends at
// once, before the acknowledgement, and the next one catches up first.
func TestLocalWriteFailureEndsTheLease(t *testing.T) {
	holder, _, _, _, _ := newLeasedNodes(t)
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	healthy := holder.local
	holder.local = failingSync{healthy}
	if _, err := holder.Put(ctx, []byte("k"), []byte("v2"), Quorum, false); err != nil {
		t.Fatalf("quorum with the local fsync failing: %v", err)
	}
	if holder.LeaseHeld() {
		t.Fatal("lease still held after the coordinator's own copy of an acknowledged write failed")
	}
	holder.local = healthy
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	if e, err := holder.Get(ctx, []byte("k"), Quorum, false); err != nil || string(e.Value) != "v2" {
		t.Fatalf("read alone under the new lease: %q, %v, want v2", e.Value, err)
	}
}

// A renewal that a local write failure overtakes does not revive the lease.
func TestRenewalDoesNotReviveAnInvalidatedLease(t *testing.T) {
	holder, _, _, _, _ := newLeasedNodes(t)
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	holder.lease.mu.Lock()
	epoch := holder.lease.epoch
	holder.lease.mu.Unlock()
	holder.invalidateLease()
	holder.lease.mu.Lock()
	advanced := holder.lease.epoch != epoch
	holder.lease.mu.Unlock()
	if !advanced {
		t.Fatal("invalidateLease did not advance the epoch a renewal in flight checks")
	}
	if holder.LeaseHeld() {
		t.Fatal("lease held after invalidateLease")
	}
}

// Leases off (ReadLease 0, --read-lease 0): no grants are asked for, even
// of replicas willing to grant them, and quorum reads read a second
// replica.
func TestLeasesOff(t *testing.T) {
	n, peers, others := newTestNodeWith(t, func(c *Config) { c.ReadLease = 0 })
	peers.grantors = map[string]*Node{}
	for _, p := range others {
		peers.grantors[p.Addr] = New(DefaultConfig(), fakeRing{self: p}, peers.stores[p.Addr], peers, store.NewClock(time.Now))
	}
	if err := n.RenewLease(ctx); err != nil || n.LeaseHeld() {
		t.Fatalf("RenewLease with leases off: %v, held %v", err, n.LeaseHeld())
	}
	for _, g := range peers.grantors {
		if len(g.grants.byHolder) != 0 {
			t.Fatal("a replica granted a lease nobody should have asked for")
		}
	}
	_, _ = n.Put(ctx, []byte("k"), []byte("v"), Quorum, false)
	if _, err := n.Get(ctx, []byte("k"), Quorum, false); err != nil {
		t.Fatal(err)
	}
	if peers.reads[others[0].Addr]+peers.reads[others[1].Addr] != 1 {
		t.Errorf("quorum read with leases off read %d other replicas, want 1", peers.reads[others[0].Addr]+peers.reads[others[1].Addr])
	}
	if n.Leases().Renewing {
		t.Error("status says renewing with leases off, after a quorum read")
	}
}

// A holder leaving the ring releases its lease: it stops reading alone at
// once, and its grantors accept other coordinators' writes without waiting
// the grants out.
func TestReleaseLease(t *testing.T) {
	holder, _, others, grantors, _ := newLeasedNodes(t)
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	entry := []store.Entry{{Key: []byte("k"), Value: []byte("v"), Version: store.Version{HLC: 1, Node: others[1].ID}}}
	if _, err := grantors[0].ApplyFrom(others[1], entry); !errors.Is(err, ErrLeased) {
		t.Fatalf("before the release: %v, want ErrLeased", err)
	}
	holder.ReleaseLease(ctx)
	if holder.LeaseHeld() {
		t.Error("lease still held after ReleaseLease")
	}
	if _, err := grantors[0].ApplyFrom(others[1], entry); err != nil {
		t.Errorf("after the release: %v", err)
	}
}

// A node does not grant a range overlapping the lease it holds itself: its
// own writes there must land in its store while it reads alone, and such a
// grant would refuse them. Once its lease is gone, it grants.
func TestNoGrantOverOwnLease(t *testing.T) {
	holder, _, _, _, clock := newLeasedNodes(t)
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	joiner := chord.NewPeer("joiner:1")
	var mid ring.ID
	mid[0] = 0x80
	err := holder.GrantLease(joiner, mid, holder.self.ID, time.Second)
	if !errors.Is(err, ErrLeased) {
		t.Fatalf("grant over the node's own lease: %v, want ErrLeased", err)
	}
	clock.Advance(testLease)
	if err := holder.GrantLease(joiner, mid, holder.self.ID, time.Second); err != nil {
		t.Fatalf("grant once the node's own lease ran out: %v", err)
	}
}

// A renewal extends a lease without a catch-up only when every grant was
// renewed before the lease ran out; one whose grants came back later (the
// grantors may have taken other coordinators' writes in the gap) is caught
// up again, like a new lease.
func TestSlowRenewalCatchesUpAgain(t *testing.T) {
	holder, peers, _, _, clock := newLeasedNodes(t)
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	rounds := func() int64 { return holder.Stats().SyncRounds }
	before := rounds()
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rounds() - before; got != 0 {
		t.Errorf("a prompt renewal ran %d catch-up exchanges, want 0", got)
	}
	// The grants take until after the lease's end to come back.
	peers.mu.Lock()
	peers.onGrant = func() { clock.Advance(testLease / 2) }
	peers.mu.Unlock()
	clock.Advance(testLease / 2)
	before = rounds()
	err := holder.RenewLease(ctx)
	if got := rounds() - before; got != 2 {
		t.Errorf("a renewal granted after the lease ran out ran %d catch-up exchanges (err %v), want one per grantor", got, err)
	}
}

// A node that granted a lease over a key does not coordinate a write to it,
// not even to its own successors: they are not the holder's grantors, so the
// write could be acknowledged without the holder. The simulation's lossy soak
// found a replica that a client's router fell back to doing just that.
func TestGrantorDoesNotCoordinateWritesToTheLeasedRange(t *testing.T) {
	n, peers, others := newTestNodeWith(t, func(c *Config) { c.ReadLease = time.Second })
	if err := n.GrantLease(chord.NewPeer("holder:1"), n.self.ID, n.self.ID, time.Second); err != nil { // the whole ring
		t.Fatal(err)
	}
	_, err := n.Put(ctx, []byte("k"), []byte("v"), Quorum, true)
	if !errors.Is(err, ErrLeased) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write to a range this node leased out: %v, want ErrUnavailable and ErrLeased", err)
	}
	if err := n.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]chord.Peer{n.self}, others...) {
		s := n.local
		if p != n.self {
			s = peers.stores[p.Addr]
		}
		if _, found, _ := s.Get([]byte("k")); found {
			t.Errorf("%s stored a write its coordinator should have refused", p.Addr)
		}
	}
}

// Leases is what `chordkv status` shows: the holder's range, grantors and
// time left, and each grantor's count of grants, none of them once expired.
func TestLeasesReportsHeldAndGranted(t *testing.T) {
	holder, _, others, grantors, clock := newLeasedNodes(t)
	if st := holder.Leases(); st.Held || st.Granted != 0 {
		t.Fatalf("before any renewal: %+v", st)
	}
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	st := holder.Leases()
	wantGrantors := []string{others[0].Addr, others[1].Addr}
	slices.Sort(wantGrantors)
	if !st.Held || !slices.Equal(st.Grantors, wantGrantors) || st.Remaining != testLease-testLease/leaseDriftMargin-time.Second {
		t.Errorf("holder: %+v; want held, grantors %v, %v left", st, wantGrantors, testLease-testLease/leaseDriftMargin-time.Second)
	}
	nb := holder.ring.Neighbors()
	if st.From != nb.Predecessor.ID || st.To != holder.self.ID {
		t.Errorf("holder's range (%s, %s], want its primary range (%s, %s]", st.From.Short(), st.To.Short(), nb.Predecessor.ID.Short(), holder.self.ID.Short())
	}
	for i, g := range grantors {
		if st := g.Leases(); st.Held || st.Granted != 1 {
			t.Errorf("grantor %d: %+v; want one grant and no lease", i, st)
		}
	}
	clock.Advance(testLease)
	if st := holder.Leases(); st.Held {
		t.Errorf("holder after expiry: %+v", st)
	}
	if st := grantors[0].Leases(); st.Granted != 0 {
		t.Errorf("grantor after expiry: %+v", st)
	}
}

// A node grants no lease longer than its own ReadLease, and none with
// leases off: a restarted node waits out only its own ReadLease for the
// grants it forgot (Config.Restarted).
func TestGrantLeaseNoLongerThanOwnLease(t *testing.T) {
	holder := chord.NewPeer("h:1")
	id := ring.HashKey([]byte("x"))
	tests := []struct {
		name      string
		own, asks time.Duration
		want      error
	}{
		{"leases off here", 0, time.Second, ErrInvalidArgument},
		{"longer than its own", time.Second, 2 * time.Second, ErrInvalidArgument},
		{"as long as its own", time.Second, time.Second, nil},
		{"shorter", time.Second, 100 * time.Millisecond, nil},
		{"a release with leases off", 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, _, _ := newTestNodeWith(t, func(c *Config) { c.ReadLease = tt.own })
			err := n.GrantLease(holder, id, id, tt.asks)
			if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("GrantLease(%s) on a node with --read-lease %s = %v, want %v", tt.asks, tt.own, err, tt.want)
			}
		})
	}
}

// A restarted node may have leased ranges out in its earlier run and does
// not remember it: for its own ReadLease it refuses every write another
// node coordinates, as a grantor would, and still takes its own and repair
// writes. Without the wait, two replicas restarted within a lease could
// acknowledge a write without the holder, which then reads alone an older
// value.
func TestRestartedNodeWaitsOutForgottenGrants(t *testing.T) {
	clock := &manualClock{now: time.Unix(1_000_000, 0)}
	for _, restarted := range []bool{false, true} {
		t.Run(fmt.Sprintf("restarted=%v", restarted), func(t *testing.T) {
			n, _, others := newTestNodeWith(t, func(c *Config) {
				c.ReadLease = testLease
				c.Restarted = restarted
				c.Now = clock.Now
			})
			entry := func(i int) []store.Entry {
				return []store.Entry{{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v"), Version: store.Version{HLC: uint64(i + 1), Node: others[0].ID}}}
			}
			_, err := n.ApplyFrom(others[0], entry(0))
			if restarted && !errors.Is(err, ErrLeased) {
				t.Errorf("a write another node coordinates, right after the restart: %v, want ErrLeased", err)
			}
			if !restarted && err != nil {
				t.Errorf("a write another node coordinates, on a new node: %v", err)
			}
			if _, err := n.ApplyLocal(entry(1)); err != nil {
				t.Errorf("a repair write: %v", err)
			}
			if _, err := n.Put(ctx, []byte("own"), []byte("v"), Quorum, true); err != nil {
				t.Errorf("a write it coordinates: %v", err)
			}
			clock.Advance(testLease)
			if _, err := n.ApplyFrom(others[0], entry(2)); err != nil {
				t.Errorf("a write another node coordinates, a lease after the restart: %v", err)
			}
		})
	}
}

// lockedBuffer is a log destination safe for the renewal goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runRenewals runs holder's renewal loop (renewLeases) until the returned
// stop is called; stop returns once the loop has.
func runRenewals(holder *Node) (stop func()) {
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		holder.renewLeases(runCtx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// Replicas that refuse a lease for its length (their --read-lease is
// shorter) are a misconfiguration, not churn: the holder says so at Warn,
// once until a renewal succeeds, rather than at Debug on every renewal.
func TestRenewLeasesWarnsOnceAboutRefusedLength(t *testing.T) {
	holder, peers, others, _, clock := newLeasedNodes(t)
	shorter := DefaultConfig()
	shorter.ReadLease = 30 * time.Millisecond
	for _, p := range others {
		g := New(shorter, fakeRing{self: p}, peers.stores[p.Addr], peers, store.NewClock(time.Now))
		g.now = clock.Now
		peers.grantors[p.Addr] = g
	}
	holder.cfg.ReadLease = 60 * time.Millisecond // renewals every 20ms
	var logs lockedBuffer
	holder.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	stop := runRenewals(holder)
	time.Sleep(200 * time.Millisecond) // about ten renewals
	stop()
	out := logs.String()
	if got := strings.Count(out, "level=WARN"); got != 1 || !strings.Contains(out, "same --read-lease") {
		t.Errorf("%d warnings in:\n%s\nwant one naming --read-lease", got, out)
	}
	if holder.LeaseHeld() {
		t.Error("a lease held although every grant was refused")
	}
}

// predRing is fakeRing with a predecessor, so that the node's primary range,
// and the lease over it, is (pred, self] rather than the whole ring.
type predRing struct {
	fakeRing
	pred chord.Peer
}

func (r predRing) Neighbors() chord.Neighbors {
	nb := r.fakeRing.Neighbors()
	nb.Predecessor = r.pred
	return nb
}

// keysAround returns a key inside (from, to] and one outside it.
func keysAround(t *testing.T, from, to ring.ID) (inside, outside []byte) {
	t.Helper()
	for i := 0; inside == nil || outside == nil; i++ {
		if i == 10_000 {
			t.Fatal("no key found on both sides of the range")
		}
		k := []byte(fmt.Sprintf("k%d", i))
		if ring.BetweenRightIncl(from, ring.HashKey(k), to) {
			inside = k
		} else {
			outside = k
		}
	}
	return inside, outside
}

// A lease covers the range its grants named. When the predecessor goes and
// the holder's range grows, its grantors never refused other coordinators'
// writes to the part it gained, so quorum reads there ask a second replica
// until a renewal has caught that part up (Gray and Cheriton §2: the lease
// is on the data it was granted for).
func TestLeaseCoversOnlyItsGrantedRange(t *testing.T) {
	holder, peers, others, _, _ := newLeasedNodes(t)
	pred := chord.NewPeer("p:1")
	holder.ring = predRing{fakeRing{self: holder.self, succs: others}, pred}
	inside, outside := keysAround(t, pred.ID, holder.self.ID)
	for _, k := range [][]byte{inside, outside} {
		if _, err := holder.Put(ctx, k, []byte("v"), Quorum, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	// The predecessor dies: the holder now owns the whole ring.
	holder.ring = fakeRing{self: holder.self, succs: others}
	readsOf := func(k []byte) int {
		t.Helper()
		peers.mu.Lock()
		before := peers.reads[others[0].Addr] + peers.reads[others[1].Addr]
		peers.mu.Unlock()
		if _, err := holder.Get(ctx, k, Quorum, false); err != nil {
			t.Fatal(err)
		}
		peers.mu.Lock()
		defer peers.mu.Unlock()
		return peers.reads[others[0].Addr] + peers.reads[others[1].Addr] - before
	}
	if got := readsOf(inside); got != 0 {
		t.Errorf("quorum read inside the leased range read %d other replicas, want 0", got)
	}
	if got := readsOf(outside); got != 1 {
		t.Errorf("quorum read of a key the holder gained after its lease began read %d other replicas, want 1", got)
	}
}

// A lease stands for the replicas that granted it. When a node joins behind
// the holder and replaces one of them in the replica set, the newcomer never
// refused anything, so quorum reads ask a second replica again.
func TestLeaseNeedsTheCurrentReplicasGrants(t *testing.T) {
	holder, peers, others, _, _ := newLeasedNodes(t)
	if _, err := holder.Put(ctx, []byte("k"), []byte("v"), Quorum, false); err != nil {
		t.Fatal(err)
	}
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	newcomer := chord.NewPeer("d:1")
	peers.addReplica(t, newcomer)
	holder.ring = fakeRing{self: holder.self, succs: []chord.Peer{others[0], newcomer}}
	if _, err := holder.Get(ctx, []byte("k"), Quorum, false); err != nil {
		t.Fatal(err)
	}
	peers.mu.Lock()
	defer peers.mu.Unlock()
	if got := peers.reads[others[0].Addr] + peers.reads[newcomer.Addr]; got != 1 {
		t.Errorf("quorum read with a replica that never granted the lease read %d other replicas, want 1", got)
	}
}

// A local write that fails while a renewal is in flight (after the renewal
// began, before it stores the lease) wins: the renewal fails and no lease
// is held, since its catch-up may predate the write the holder lacks.
func TestLocalWriteFailureDuringARenewal(t *testing.T) {
	holder, peers, _, _, _ := newLeasedNodes(t)
	var once sync.Once
	peers.mu.Lock()
	peers.onGrant = func() { once.Do(holder.invalidateLease) }
	peers.mu.Unlock()
	if err := holder.RenewLease(ctx); err == nil || !strings.Contains(err.Error(), "a local write failed meanwhile") {
		t.Errorf("renewal overtaken by a failed local write: %v, want its refusal", err)
	}
	if holder.LeaseHeld() {
		t.Error("lease held after a renewal that a failed local write overtook")
	}
}

// When the holder's range shrinks (a node joined in front), it stops reading
// alone for the part it gave up before asking its grantors to narrow their
// grants, not after: a grantor that has narrowed its grant takes other
// coordinators' writes there at once.
func TestRenewalNarrowsTheLeaseFirst(t *testing.T) {
	holder, peers, others, _, _ := newLeasedNodes(t)
	if err := holder.RenewLease(ctx); err != nil { // over the whole ring
		t.Fatal(err)
	}
	joiner := chord.NewPeer("j:1")
	holder.ring = predRing{fakeRing{self: holder.self, succs: others}, joiner}
	inside, outside := keysAround(t, joiner.ID, holder.self.ID)
	var mu sync.Mutex // the grants are asked for concurrently
	var during []bool
	peers.mu.Lock()
	peers.onGrant = func() {
		mu.Lock()
		defer mu.Unlock()
		during = append(during, holder.readsAlone([][]byte{outside}, others), holder.readsAlone([][]byte{inside}, others))
	}
	peers.mu.Unlock()
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	peers.mu.Lock()
	peers.onGrant = nil
	peers.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i < len(during); i += 2 {
		if during[i] {
			t.Error("read alone, during the renewal, a key of the part of the range the holder gave up")
		}
		if !during[i+1] {
			t.Error("stopped reading alone, during the renewal, a key of the range it kept")
		}
	}
	if len(during) == 0 {
		t.Fatal("no grant was asked for")
	}
}

// The holder counts its lease from before it asked, each grantor from when
// it received the request, so an answer slow to come back shortens the
// holder's lease and never stretches it past a grant (Gray and Cheriton §2:
// the holder's term must end before the grantor's).
func TestSlowGrantAnswersShortenTheLease(t *testing.T) {
	holder, peers, _, grantors, clock := newLeasedNodes(t)
	var once sync.Once
	peers.mu.Lock()
	peers.afterGrant = func() { once.Do(func() { clock.Advance(testLease / 2) }) }
	peers.mu.Unlock()
	if err := holder.RenewLease(ctx); err != nil {
		t.Fatal(err)
	}
	held := holder.lease.held.Load()
	if held == nil {
		t.Fatal("no lease")
	}
	for _, g := range grantors {
		g.grants.mu.RLock()
		gr, ok := g.grants.byHolder[holder.self.Addr]
		g.grants.mu.RUnlock()
		if !ok {
			t.Fatalf("%s granted nothing", g.self.Addr)
		}
		if !held.until.Before(gr.until) {
			t.Errorf("the holder's lease ends at %v, not before %s's grant (%v)", held.until.Sub(clock.Now()), g.self.Addr, gr.until.Sub(clock.Now()))
		}
	}
}

// checkGrants refuses a batch when any of its entries lies in a range leased
// to a holder other than the coordinator, whichever grant and entry that is,
// and names that holder and key.
func TestCheckGrantsFindsTheLeasedEntry(t *testing.T) {
	a, b := chord.Peer{Addr: "a:1"}, chord.Peer{Addr: "b:1"}
	half := ring.ID{0x80}
	inA, inB := keysAround(t, ring.ID{}, half) // (0, half] is a's, the rest b's
	now := time.Unix(1_000_000, 0)
	live, expired := now.Add(time.Second), now.Add(-time.Second)
	entries := func(keys ...[]byte) []store.Entry {
		var es []store.Entry
		for _, k := range keys {
			es = append(es, store.Entry{Key: k, Value: []byte("v")})
		}
		return es
	}
	tests := []struct {
		name        string
		coordinator string
		bUntil      time.Time
		entries     []store.Entry
		wantHolder  string // "" when the batch is accepted
		wantKey     []byte
	}{
		{"a coordinates its own range", a.Addr, live, entries(inA, inA), "", nil},
		{"a's batch reaches into b's lease", a.Addr, live, entries(inA, inB), b.Addr, inB},
		{"b's lease ran out", a.Addr, expired, entries(inA, inB), "", nil},
		{"a third node writes a's range", "c:1", live, entries(inA), a.Addr, inA},
		{"b coordinates into a's lease, after its own key", b.Addr, live, entries(inB, inA), a.Addr, inA},
		{"the grantor itself writes b's range", "self:1", live, entries(inB), b.Addr, inB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &Node{self: chord.Peer{Addr: "self:1"}, now: func() time.Time { return now }}
			n.grants.byHolder = map[string]grant{
				a.Addr: {from: ring.ID{}, to: half, until: live},
				b.Addr: {from: half, to: ring.ID{}, until: tt.bUntil},
			}
			err := n.checkGrants(tt.coordinator, tt.entries)
			if tt.wantHolder == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrLeased) || !contains(err.Error(), tt.wantHolder) || !contains(err.Error(), fmt.Sprintf("%q", tt.wantKey)) {
				t.Fatalf("err = %v, want ErrLeased naming holder %s and key %q", err, tt.wantHolder, tt.wantKey)
			}
		})
	}
}

// BenchmarkCheckGrants is a coordinator's check of a client batch's share
// on a 3-node ring: two other holders, each with a live grant that holds
// none of the batch's keys.
func BenchmarkCheckGrants(b *testing.B) {
	now := time.Unix(1_000_000, 0)
	n := &Node{self: chord.Peer{Addr: "self:1"}, now: func() time.Time { return now }}
	var es []store.Entry
	for i := 0; len(es) < 167; i++ {
		k := []byte(fmt.Sprintf("bench-key-%09d", i))
		if ring.HashKey(k)[0] < 0x80 {
			es = append(es, store.Entry{Key: k, Value: []byte("v")})
		}
	}
	n.grants.byHolder = map[string]grant{
		"a:1": {from: ring.ID{0x80}, to: ring.ID{0xc0}, until: now.Add(time.Second)},
		"b:1": {from: ring.ID{0xc0}, to: ring.ID{}, until: now.Add(time.Second)},
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := n.checkGrants("self:1", es); err != nil {
			b.Fatal(err)
		}
	}
}

// Idle leases (Config.ReadLeaseIdle): an owner asks for no grant before a
// quorum read wants its lease, renews it while reads come, and once none came
// for ReadLeaseIdle asks nothing more and lets the lease run out; the next
// read takes it again. Writes alone never want it.
func TestLeaseIdlesWithoutReads(t *testing.T) {
	holder, peers, _, grantors, clock := newLeasedNodes(t)
	holder.cfg.ReadLeaseIdle = 2 * testLease
	var asked atomic.Int64
	peers.onGrant = func() { asked.Add(1) }
	renew := func(step string, wantAsked int64, wantHeld bool) {
		t.Helper()
		before := asked.Load()
		if err := holder.RenewLease(ctx); err != nil {
			t.Fatalf("%s: RenewLease: %v", step, err)
		}
		if got := asked.Load() - before; got != wantAsked {
			t.Errorf("%s: the renewal asked %d grantors, want %d", step, got, wantAsked)
		}
		if got := holder.LeaseHeld(); got != wantHeld {
			t.Errorf("%s: lease held %v, want %v", step, got, wantHeld)
		}
		if got := holder.Leases().Renewing; got != (wantAsked > 0) {
			t.Errorf("%s: status says renewing %v, want %v", step, got, wantAsked > 0)
		}
	}
	readAlone := func() bool {
		t.Helper()
		before := holder.Stats().LeaseReads
		if e, err := holder.Get(ctx, []byte("k"), Quorum, false); err != nil || string(e.Value) != "v" {
			t.Fatalf("quorum read: %q, %v", e.Value, err)
		}
		return holder.Stats().LeaseReads > before
	}

	if _, err := holder.Put(ctx, []byte("k"), []byte("v"), Quorum, false); err != nil {
		t.Fatal(err)
	}
	renew("after a write, before any read", 0, false)
	if readAlone() {
		t.Fatal("the first read was answered alone without a lease")
	}
	renew("after the first read", 2, true)
	if !readAlone() {
		t.Fatal("a read under the new lease asked a replica")
	}
	// Renewals every third of a lease, no read since: the lease is renewed
	// until ReadLeaseIdle has passed since the read, then runs out at the
	// end of the last renewal's lease (ReadLease less the drift margin).
	step := testLease / 3
	lastRenewal := time.Duration(0)
	for elapsed := step; elapsed <= 3*testLease; elapsed += step {
		clock.Advance(step)
		wanted := elapsed < holder.cfg.ReadLeaseIdle
		if wanted {
			lastRenewal = elapsed
		}
		held := elapsed < lastRenewal+testLease-testLease/leaseDriftMargin
		var asks int64 // one per grantor while wanted
		if wanted {
			asks = 2
		}
		renew(fmt.Sprintf("%s after the last read", elapsed), asks, held)
	}
	for i, g := range grantors {
		if st := g.Leases(); st.Granted != 0 {
			t.Errorf("grantor %d still grants %d leases after the holder went idle", i, st.Granted)
		}
	}
	if readAlone() {
		t.Fatal("a read after the lease ran out was answered alone")
	}
	renew("after a read again", 2, true)
	if !readAlone() {
		t.Fatal("a read under the lease taken again asked a replica")
	}
}

// An idle holder's renewal loop (renewLeases) asks nothing until a read wants
// the lease, and then takes it at once rather than at its next tick.
func TestRenewLeasesSleepsUntilARead(t *testing.T) {
	holder, peers, _, _, _ := newLeasedNodes(t)
	holder.cfg.ReadLease = 60 * time.Millisecond // ticks every 20ms while wanted
	holder.cfg.ReadLeaseIdle = time.Hour         // the manual clock stands still
	var asked atomic.Int64
	peers.onGrant = func() { asked.Add(1) }
	defer runRenewals(holder)()
	time.Sleep(100 * time.Millisecond) // five ticks, were it ticking
	if n := asked.Load(); n != 0 {
		t.Fatalf("an idle holder asked for %d grants", n)
	}
	if _, err := holder.Get(ctx, []byte("k"), Quorum, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("quorum read of a missing key: %v, want ErrNotFound", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !holder.LeaseHeld() {
		if time.Now().After(deadline) {
			t.Fatalf("no lease 5s after a read wanted it (%d grants asked)", asked.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

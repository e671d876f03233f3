package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// Quorum arithmetic: W and R default to a majority of r; "all" is every
// replica there is; nothing ever needs more replicas than exist or fewer
// than one.
func TestRequired(t *testing.T) {
	tests := []struct {
		c              Consistency
		r, avail, want int
	}{
		{One, 3, 3, 1},
		{Quorum, 3, 3, 2},
		{Default, 3, 3, 2},
		{All, 3, 3, 3},
		{Quorum, 5, 5, 3},
		{Quorum, 4, 4, 3},
		{All, 3, 2, 2},    // a ring of two
		{Quorum, 3, 1, 1}, // a ring of one
		{One, 1, 1, 1},
	}
	for _, tt := range tests {
		if got := required(tt.c, tt.r, tt.avail); got != tt.want {
			t.Errorf("required(%v, r=%d, avail=%d) = %d, want %d", tt.c, tt.r, tt.avail, got, tt.want)
		}
	}
	// W + R > r at quorum, for every r: a quorum read sees a quorum write.
	for r := 1; r <= 9; r++ {
		if w := required(Quorum, r, r); 2*w <= r {
			t.Errorf("r=%d: quorum %d does not intersect itself", r, w)
		}
	}
}

func TestParseConsistency(t *testing.T) {
	for in, want := range map[string]Consistency{"one": One, "quorum": Quorum, "": Quorum, "all": All} {
		if got, err := ParseConsistency(in); err != nil || got != want {
			t.Errorf("ParseConsistency(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseConsistency("most"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad level: %v", err)
	}
}

// Digest comparison: only buckets whose digests differ, or that one side
// lacks, are exchanged; in-sync replicas exchange nothing.
func TestDifferingBuckets(t *testing.T) {
	d := func(pairs ...int) []store.BucketDigest {
		var out []store.BucketDigest
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, store.BucketDigest{Bucket: pairs[i], Digest: uint64(pairs[i+1])})
		}
		return out
	}
	tests := []struct {
		name        string
		mine, their []store.BucketDigest
		want        []int
	}{
		{"in sync", d(1, 10, 2, 20), d(1, 10, 2, 20), nil},
		{"one differs", d(1, 10, 2, 20), d(1, 10, 2, 21), []int{2}},
		{"only theirs", d(1, 10), d(1, 10, 7, 1), []int{7}},
		{"only mine", d(1, 10, 5, 3), d(1, 10), []int{5}},
		{"all differ", d(1, 1, 2, 2), d(1, 9, 2, 9), []int{1, 2}},
	}
	for _, tt := range tests {
		if got := differingBuckets(tt.mine, tt.their); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// fakeRing makes this node the owner of everything with fixed successors.
// Its predecessor is itself, so that anti-entropy covers the whole ring.
type fakeRing struct {
	self  chord.Peer
	succs []chord.Peer
}

func (f fakeRing) Self() chord.Peer { return f.self }
func (f fakeRing) Neighbors() chord.Neighbors {
	return chord.Neighbors{Predecessor: f.self, Successors: f.succs}
}
func (f fakeRing) IsMember() bool    { return true }
func (f fakeRing) Owns(ring.ID) bool { return true }
func (f fakeRing) Lookup(context.Context, ring.ID) (chord.LookupResult, error) {
	return chord.LookupResult{}, errors.New("unused")
}
func (f fakeRing) Predecessors(context.Context, int) ([]chord.Peer, error) { return nil, nil }

// fakePeers holds replicas' stores in memory; dead replicas fail every call.
type fakePeers struct {
	mu       sync.Mutex
	stores   map[string]*store.Store
	dead     map[string]bool
	held     map[string]chan struct{} // Apply to a replica waits until its channel closes
	reads    map[string]int           // Read calls per replica, dead ones included
	versions map[string]int           // Versions calls per replica
	grantors map[string]*Node         // GrantLease and Replicate go to these nodes when set
	onGrant  func()                   // runs in every GrantLease call, when set
	// afterGrant runs in every GrantLease call once the grantor has
	// answered, when set: the answer's way back.
	afterGrant func()
	refuse     map[string]bool // Apply to these replicas fails; their other calls work
}

// hold makes p's Apply calls wait until the returned function is called.
func (f *fakePeers) hold(p chord.Peer) (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held == nil {
		f.held = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	f.held[p.Addr] = ch
	return sync.OnceFunc(func() { close(ch) })
}

func (f *fakePeers) setDead(p chord.Peer, dead bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dead[p.Addr] = dead
}

func (f *fakePeers) get(p chord.Peer) (*store.Store, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead[p.Addr] {
		return nil, fmt.Errorf("%s: %w", p.Addr, ErrUnavailable)
	}
	return f.stores[p.Addr], nil
}
func (f *fakePeers) Forward(context.Context, chord.Peer, Request) (store.Entry, error) {
	return store.Entry{}, errors.New("unused")
}
func (f *fakePeers) Apply(ctx context.Context, p chord.Peer, es []store.Entry) (int, error) {
	f.mu.Lock()
	held := f.held[p.Addr]
	f.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	s, err := f.get(p)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	refused := f.refuse[p.Addr]
	f.mu.Unlock()
	if refused {
		return 0, fmt.Errorf("%s: refused: %w", p.Addr, ErrUnavailable)
	}
	_, err = s.Apply(es...)
	return len(es), err
}
func (f *fakePeers) Replicate(ctx context.Context, p, coordinator chord.Peer, es []store.Entry) (int, error) {
	f.mu.Lock()
	g := f.grantors[p.Addr]
	f.mu.Unlock()
	if g != nil {
		if _, err := f.get(p); err != nil {
			return 0, err
		}
		return g.ApplyFrom(coordinator, es)
	}
	return f.Apply(ctx, p, es)
}
func (f *fakePeers) GrantLease(_ context.Context, p, holder chord.Peer, from, to ring.ID, d time.Duration) error {
	if _, err := f.get(p); err != nil {
		return err
	}
	f.mu.Lock()
	g, onGrant, afterGrant := f.grantors[p.Addr], f.onGrant, f.afterGrant
	f.mu.Unlock()
	if onGrant != nil {
		onGrant()
	}
	if g == nil {
		return nil
	}
	err := g.GrantLease(holder, from, to, d)
	if afterGrant != nil {
		afterGrant()
	}
	return err
}
func (f *fakePeers) ForwardMany(context.Context, chord.Peer, Op, []Item, Consistency) ([]Result, error) {
	return nil, errors.New("unused")
}
func (f *fakePeers) ReadStored(ctx context.Context, p chord.Peer, keys [][]byte) ([]ReadResult, error) {
	return f.Read(ctx, p, keys)
}
func (f *fakePeers) Read(_ context.Context, p chord.Peer, keys [][]byte) ([]ReadResult, error) {
	f.mu.Lock()
	f.reads[p.Addr]++
	f.mu.Unlock()
	s, err := f.get(p)
	if err != nil {
		return nil, err
	}
	out := make([]ReadResult, len(keys))
	for i, k := range keys {
		if out[i].Entry, out[i].Found, err = s.Get(k); err != nil {
			return nil, err
		}
	}
	return out, nil
}
func (f *fakePeers) Digests(_ context.Context, p chord.Peer, a, b ring.ID, horizon uint64, _ bool) ([]store.BucketDigest, error) {
	s, err := f.get(p)
	if err != nil {
		return nil, err
	}
	return s.SettledDigests(a, b, horizon)
}
func (f *fakePeers) Fetch(_ context.Context, p chord.Peer, a, b ring.ID, buckets []int, fn func([]store.Entry) error) error {
	s, err := f.get(p)
	if err != nil {
		return err
	}
	for _, bk := range buckets {
		var batch []store.Entry
		if err := s.BucketEntries(bk, a, b, func(e store.Entry) bool {
			batch = append(batch, e)
			return true
		}); err != nil {
			return err
		}
		if err := fn(batch); err != nil {
			return err
		}
	}
	return nil
}
func (f *fakePeers) Versions(ctx context.Context, p chord.Peer, a, b ring.ID, buckets []int, fn func([]store.Entry) error) error {
	f.mu.Lock()
	f.versions[p.Addr]++
	f.mu.Unlock()
	return f.Fetch(ctx, p, a, b, buckets, WithoutValues(fn))
}

func newTestNode(t *testing.T) (*Node, *fakePeers, []chord.Peer) {
	t.Helper()
	return newTestNodeWith(t, func(*Config) {})
}

// newTestNodeWith is newTestNode with its Config changed by set first.
// memStore is an in-memory store, closed when the test ends.
func memStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(store.Options{InMemory: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// addReplica gives p an empty store among f's replicas and returns it.
func (f *fakePeers) addReplica(t *testing.T, p chord.Peer) *store.Store {
	s := memStore(t)
	f.mu.Lock()
	f.stores[p.Addr] = s
	f.mu.Unlock()
	return s
}

func newTestNodeWith(t *testing.T, set func(*Config)) (*Node, *fakePeers, []chord.Peer) {
	t.Helper()
	open := func() *store.Store { return memStore(t) }
	self := chord.NewPeer("a:1")
	others := []chord.Peer{chord.NewPeer("b:1"), chord.NewPeer("c:1")}
	peers := &fakePeers{stores: map[string]*store.Store{}, dead: map[string]bool{}, reads: map[string]int{}, versions: map[string]int{}}
	for _, p := range others {
		peers.stores[p.Addr] = open()
	}
	cfg := DefaultConfig()
	cfg.CallTimeout = time.Second
	set(&cfg)
	n := New(cfg, fakeRing{self: self, succs: others}, open(), peers, store.NewClock(time.Now))
	n.MarkSynced()
	return n, peers, others
}

var ctx = context.Background()

func TestWriteQuorum(t *testing.T) {
	n, peers, others := newTestNode(t)
	key := []byte("k")
	// One replica down: quorum (2 of 3) still writes, all does not.
	peers.setDead(others[0], true)
	if _, err := n.Put(ctx, key, []byte("v1"), Quorum, false); err != nil {
		t.Fatalf("quorum with one replica down: %v", err)
	}
	if _, err := n.Put(ctx, key, []byte("v2"), All, false); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("all with one replica down: %v, want ErrUnavailable", err)
	}
	// Two down: quorum fails with a message naming the count.
	peers.setDead(others[1], true)
	_, err := n.Put(ctx, key, []byte("v3"), Quorum, false)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("quorum with two replicas down: %v", err)
	}
	if _, err := n.Put(ctx, key, []byte("v4"), One, false); err != nil {
		t.Fatalf("one with two replicas down: %v", err)
	}
	if err := n.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

// A write returns once its quorum has it, without waiting for a slow
// replica, and keeps replicating to that replica afterwards; WaitIdle, which
// a node stopping calls, waits until the slow replica has the write too.
func TestWriteReturnsAtQuorumAndFinishesInBackground(t *testing.T) {
	n, peers, others := newTestNodeWith(t, func(c *Config) { c.CallTimeout = time.Minute })
	release := peers.hold(others[1])
	defer release()
	key := []byte("k")
	if _, err := n.Put(ctx, key, []byte("v1"), Quorum, false); err != nil {
		t.Fatalf("quorum with one replica slow: %v", err)
	}
	slow := peers.stores[others[1].Addr]
	if _, found, _ := slow.Get(key); found {
		t.Fatal("the held replica has the write already")
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := n.WaitIdle(short); err == nil {
		t.Fatal("WaitIdle returned while a replica's write was still in flight")
	}
	allCtx, cancelAll := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelAll()
	if _, err := n.Put(allCtx, key, []byte("v2"), All, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("all with one replica slow, under a deadline: %v, want DeadlineExceeded", err)
	}
	release()
	if err := n.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	e, found, err := slow.Get(key)
	if err != nil || !found || string(e.Value) != "v2" {
		t.Fatalf("the slow replica holds %q (found %v, err %v) after WaitIdle, want v2", e.Value, found, err)
	}
}

// storeIn writes entries straight into a node's store, as replication
// would have left them, without the node's clock seeing them.
func storeIn(t *testing.T, local Local, entries ...store.Entry) {
	t.Helper()
	_, wait, err := local.ApplyUncached(entries...)
	if err == nil {
		err = wait()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// failingSync is a local store whose writes never become durable: each
// write's fsync fails.
type failingSync struct{ Local }

var errSyncFailed = errors.New("fsync failed")

func (f failingSync) ApplyAsync(entries ...store.Entry) ([]bool, func() error, error) {
	applied, _, err := f.Local.ApplyAsync(entries...)
	return applied, func() error { return errSyncFailed }, err
}

// A coordinator whose own fsync fails does not count itself: a quorum
// write needs both other replicas then, and a write at all fails, naming
// the local error. The local fsync is confirmed after the replicas'
// answers, so this also checks that a late local failure sends the write
// back to waiting for another replica.
func TestWriteWithFailingLocalSync(t *testing.T) {
	n, peers, others := newTestNode(t)
	n.local = failingSync{n.local}
	if _, err := n.Put(ctx, []byte("k1"), []byte("v"), Quorum, false); err != nil {
		t.Fatalf("quorum with the local fsync failing: %v", err)
	}
	for _, p := range others {
		if _, found, _ := peers.stores[p.Addr].Get([]byte("k1")); !found {
			t.Errorf("replica %s lacks the write acknowledged without the coordinator", p.Addr)
		}
	}
	_, err := n.Put(ctx, []byte("k2"), []byte("v"), All, false)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errSyncFailed) {
		t.Fatalf("all with the local fsync failing: %v, want ErrUnavailable naming the fsync error", err)
	}
	peers.setDead(others[0], true)
	if _, err := n.Put(ctx, []byte("k3"), []byte("v"), Quorum, false); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("quorum with the local fsync failing and a replica down: %v, want ErrUnavailable", err)
	}
	if err := n.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

// A write that fails before its coordinator confirmed its own fsync (the
// client's deadline passed, too many replicas down) still finishes that
// confirmation: the on-disk store, which holds each unconfirmed write open,
// must close afterwards.
func TestFailedWritesLeaveTheStoreClosable(t *testing.T) {
	n, peers, others := newTestNode(t)
	disk, err := store.Open(store.Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	n.local = disk
	release := peers.hold(others[0])
	defer release()
	peers.setDead(others[1], true)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := n.Put(short, []byte("k1"), []byte("v"), Quorum, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("quorum with one replica held and one down, under a deadline: %v, want DeadlineExceeded", err)
	}
	peers.setDead(others[0], true)
	release()
	if _, err := n.Put(ctx, []byte("k2"), []byte("v"), Quorum, false); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("quorum with both replicas down: %v, want ErrUnavailable", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- disk.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the store did not close: a failed write left its fsync unconfirmed")
	}
}

// Reads return the newest version among the replicas they read and repair
// the stale ones, tombstones included.
func TestReadReturnsNewestAndRepairs(t *testing.T) {
	n, peers, others := newTestNode(t)
	key := []byte("k")
	peers.setDead(others[1], true)
	v1, err := n.Put(ctx, key, []byte("old"), Quorum, false)
	if err != nil {
		t.Fatal(err)
	}
	// others[1] missed v1; now it comes back and others[0] goes down after
	// a newer write reaches it and us only.
	peers.setDead(others[1], false)
	newer := store.Entry{Key: key, Value: []byte("new"), Version: store.Version{HLC: v1.HLC + 1, Node: others[0].ID}}
	if _, err := peers.stores[others[0].Addr].Apply(newer); err != nil {
		t.Fatal(err)
	}
	e, err := n.Get(ctx, key, All, false)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Value) != "new" {
		t.Fatalf("read %q, want the newest, %q", e.Value, "new")
	}
	if err := n.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*store.Store{peers.stores[others[1].Addr]} {
		got, ok, _ := s.Get(key)
		if !ok || got.Version != newer.Version {
			t.Fatalf("stale replica not repaired: %+v", got)
		}
	}
	if got, _, _ := n.local.Get(key); got.Version != newer.Version {
		t.Fatalf("local replica not repaired: %+v", got.Version)
	}
	// A delete is a tombstone: reads say not found, and it stays that way.
	if _, err := n.Delete(ctx, key, Quorum, false); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Get(ctx, key, Quorum, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	}
	if _, err := n.Get(ctx, []byte("never-written"), One, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
}

func TestLimits(t *testing.T) {
	n, _, _ := newTestNode(t)
	big := make([]byte, n.cfg.MaxValueBytes+1)
	tests := []struct {
		name       string
		key, value []byte
		wantInMsg  string
	}{
		{"empty key", nil, []byte("v"), "key is empty"},
		{"key too long", make([]byte, n.cfg.MaxKeyBytes+1), []byte("v"), "limit is 1024 bytes"},
		{"value too long", []byte("k"), big, "limit is 1048576 bytes"},
	}
	for _, tt := range tests {
		_, err := n.Put(ctx, tt.key, tt.value, Quorum, false)
		if !errors.Is(err, ErrInvalidArgument) || !contains(err.Error(), tt.wantInMsg) {
			t.Errorf("%s: %v, want InvalidArgument naming %q", tt.name, err, tt.wantInMsg)
		}
	}
	if _, err := n.Put(ctx, make([]byte, n.cfg.MaxKeyBytes), make([]byte, n.cfg.MaxValueBytes), Quorum, false); err != nil {
		t.Errorf("largest allowed item refused: %v", err)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// fallbackRing is a ring view in which this node owns nothing and a lookup
// names set as the replicas of every key: the node coordinates only keys a
// router fell back to it with.
type fallbackRing struct {
	fakeRing
	set []chord.Peer
}

func (f fallbackRing) Owns(ring.ID) bool { return false }
func (f fallbackRing) Lookup(context.Context, ring.ID) (chord.LookupResult, error) {
	return chord.LookupResult{Successors: f.set}, nil
}

// A replica a router fell back to, because the key's owner did not answer,
// coordinates on the key's replica set, not on its own successors: a write
// acknowledged by it and its own successor could otherwise miss the owner
// and the owner's first successor, the two replicas a quorum read at the
// owner asks once it is back.
func TestFallbackCoordinatorUsesTheKeysReplicaSet(t *testing.T) {
	n, peers, others := newTestNode(t)
	owner := chord.NewPeer("owner:1")
	peers.setDead(owner, true)
	// The key's replicas are the owner, this node and others[0]; this
	// node's own successors are others[0] and others[1].
	n.ring = fallbackRing{fakeRing: fakeRing{self: n.self, succs: others}, set: []chord.Peer{owner, n.self, others[0]}}
	if _, err := n.Put(ctx, []byte("k"), []byte("v"), Quorum, true); err != nil {
		t.Fatalf("fallback write with the owner down: %v", err)
	}
	if err := n.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := peers.stores[others[0].Addr].Get([]byte("k")); !found {
		t.Error("the key's other live replica lacks the write")
	}
	if _, found, _ := peers.stores[others[1].Addr].Get([]byte("k")); found {
		t.Error("the write went to the coordinator's own successor, outside the key's replica set")
	}
	e, err := n.Get(ctx, []byte("k"), Quorum, true)
	if err != nil || string(e.Value) != "v" {
		t.Fatalf("fallback read: %q, %v", e.Value, err)
	}
	if peers.reads[others[1].Addr] != 0 {
		t.Errorf("the read asked %s, outside the key's replica set", others[1].Addr)
	}
}

// A replica read answers from the node's store once it is synced. While it
// still takes over its ranges after a join, it also reads its successor
// (stored copies only) and answers each key's newer entry, and fails
// Unavailable when the successor does not answer, so that the coordinator
// asks its next replica rather than count a store that has not pulled the
// range yet.
func TestReplicaReadDuringTakeOver(t *testing.T) {
	older := func(v string) store.Entry {
		return store.Entry{Key: []byte("k"), Value: []byte(v), Version: store.Version{HLC: 1, Node: ring.HashKey([]byte("w"))}}
	}
	newer := func(v string) store.Entry {
		return store.Entry{Key: []byte("k"), Value: []byte(v), Version: store.Version{HLC: 2, Node: ring.HashKey([]byte("w"))}}
	}
	tests := []struct {
		name       string
		synced     bool
		storedOnly bool
		successor  bool // the successor answers
		here, next *store.Entry
		want       string // value read, "" for not found
		wantErr    error
		wantAsked  int // reads of the successor
	}{
		{name: "synced reads its store alone", synced: true, successor: true, next: ptr(newer("next")), want: "", wantAsked: 0},
		{name: "only the successor has it", successor: true, next: ptr(newer("next")), want: "next", wantAsked: 1},
		{name: "the successor's is newer", successor: true, here: ptr(older("here")), next: ptr(newer("next")), want: "next", wantAsked: 1},
		{name: "its own is newer", successor: true, here: ptr(newer("here")), next: ptr(older("next")), want: "here", wantAsked: 1},
		{name: "neither has it", successor: true, want: "", wantAsked: 1},
		{name: "stored only", storedOnly: true, successor: true, here: ptr(older("here")), next: ptr(newer("next")), want: "here", wantAsked: 0},
		{name: "the successor is down", here: ptr(newer("here")), wantErr: ErrUnavailable, wantAsked: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, peers, others := newTestNode(t)
			n.synced.Store(tt.synced)
			if tt.here != nil {
				storeIn(t, n.local, *tt.here)
			}
			if tt.next != nil {
				if _, err := peers.stores[others[0].Addr].Apply(*tt.next); err != nil {
					t.Fatal(err)
				}
			}
			peers.setDead(others[0], !tt.successor)
			got, err := n.ReadReplica(ctx, [][]byte{[]byte("k")}, tt.storedOnly, 0)
			if asked := peers.reads[others[0].Addr]; asked != tt.wantAsked {
				t.Errorf("the successor was read %d times, want %d", asked, tt.wantAsked)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("read: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if value := string(got[0].Entry.Value); got[0].Found != (tt.want != "") || value != tt.want {
				t.Errorf("read %q (found %v), want %q", value, got[0].Found, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// With a budget, a replica read answers the longest prefix of the keys
// whose values fit in it, at least one key: a read of many large values is
// held in memory a part at a time. A node taking over its ranges asks its
// successor for that prefix only.
func TestReplicaReadBudget(t *testing.T) {
	n, peers, others := newTestNode(t)
	keys := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	for _, k := range keys {
		e := store.Entry{Key: k, Value: make([]byte, 600), Version: store.Version{HLC: 1, Node: ring.HashKey(k)}}
		storeIn(t, n.local, e)
	}
	tests := []struct {
		budget, want int
	}{
		{0, 3}, {100, 1}, {1200, 2}, {1799, 2}, {1800, 3},
	}
	for _, tt := range tests {
		got, err := n.ReadReplica(ctx, keys, false, tt.budget)
		if err != nil || len(got) != tt.want {
			t.Errorf("budget %d: %d results, %v; want %d", tt.budget, len(got), err, tt.want)
		}
	}
	n.synced.Store(false)
	got, err := n.ReadReplica(ctx, keys, false, 1200)
	if err != nil || len(got) != 2 || peers.reads[others[0].Addr] != 1 {
		t.Errorf("taking over, budget 1200: %d results, %v, %d reads of the successor; want 2 and 1", len(got), err, peers.reads[others[0].Addr])
	}
}

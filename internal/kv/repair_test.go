package kv

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// TestAntiEntropyMovesOnlyDifferingKeys checks the data contract's "in-sync
// replicas cost only a small digest exchange" where digests differ: within
// a differing bucket only the keys that differ move, each one way, and keys
// written less than RepairSettle ago are left to the write path.
func TestAntiEntropyMovesOnlyDifferingKeys(t *testing.T) {
	old := store.HLCAt(time.Now().Add(-time.Hour))
	young := store.HLCAt(time.Now())
	writer := chord.NewPeer("w:1").ID
	entry := func(key string, hlc uint64, value string) store.Entry {
		return store.Entry{Key: []byte(key), Value: []byte(value), Version: store.Version{HLC: hlc, Node: writer}}
	}
	for _, tc := range []struct {
		name   string
		settle time.Duration
		// moved: whether the young differences move too.
		moved bool
	}{
		// An hour, not the default (two call timeouts), so that a slow
		// run (-race) cannot age the young writes past it.
		{"a settle time leaves young writes", time.Hour, false},
		{"no settle moves everything", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, peers, others := newTestNodeWith(t, func(c *Config) { c.RepairSettle = tc.settle })
			b, c := peers.stores[others[0].Addr], peers.stores[others[1].Addr]
			var common []store.Entry
			for i := range 20000 {
				common = append(common, entry(fmt.Sprintf("k%05d", i), old, "same"))
			}
			for _, s := range []Local{n.local, b, c} {
				storeIn(t, s, common...)
			}
			storeIn(t, n.local, entry("k00001", old+1, "newer here"), entry("only-here", old, "x"), entry("young-here", young, "y"))
			storeIn(t, b, entry("k00002", old+1, "newer on b"), entry("only-on-b", old, "x"), entry("k00003", young, "young on b"))

			if done, err := n.AntiEntropy(ctx); err != nil || done != 2 {
				t.Fatalf("AntiEntropy = %d, %v; want 2 replicas, no error", done, err)
			}

			// This node pulls k00002 and only-on-b from b; it pushes k00001 and
			// only-here to b, and those two plus the two it pulled to c.
			wantPulled, wantPushed := int64(2), int64(2+4)
			if tc.moved {
				wantPulled++    // k00003
				wantPushed += 3 // young-here to b and c, k00003 to c
			}
			st := n.Stats()
			if st.Pulled != wantPulled || st.Pushed != wantPushed {
				t.Errorf("pulled %d, pushed %d entries; want %d and %d (the 20,000 keys in sync must not move)",
					st.Pulled, st.Pushed, wantPulled, wantPushed)
			}
			has := func(s Local, key string, hlc uint64) bool {
				e, ok, err := s.Get([]byte(key))
				return err == nil && ok && e.Version.HLC == hlc
			}
			for _, s := range []struct {
				name string
				s    Local
			}{{"self", n.local}, {"b", b}, {"c", c}} {
				for _, k := range []struct {
					key string
					hlc uint64
				}{{"k00001", old + 1}, {"k00002", old + 1}, {"only-here", old}, {"only-on-b", old}} {
					if !has(s.s, k.key, k.hlc) {
						t.Errorf("%s lacks %s after the round", s.name, k.key)
					}
				}
				if got := has(s.s, "young-here", young); got != (tc.moved || s.name == "self") {
					t.Errorf("%s holds young-here: %v", s.name, got)
				}
				if got := has(s.s, "k00003", young); got != (tc.moved || s.name == "b") {
					t.Errorf("%s holds the young k00003: %v", s.name, got)
				}
			}

			// A second round finds nothing to move: either all agree, or
			// only young differences remain.
			if _, err := n.AntiEntropy(ctx); err != nil {
				t.Fatal(err)
			}
			if again := n.Stats(); again.Pulled != st.Pulled || again.Pushed != st.Pushed {
				t.Errorf("second round moved %d more in, %d more out", again.Pulled-st.Pulled, again.Pushed-st.Pushed)
			}
		})
	}
}

// TestHandOffDoesNotWait: a leaving node hands over even its youngest
// writes, since it will not be there for the next round.
func TestHandOffDoesNotWait(t *testing.T) {
	n, peers, others := newTestNode(t)
	young := store.Entry{Key: []byte("young"), Value: []byte("v"), Version: store.Version{HLC: store.HLCAt(time.Now()), Node: n.self.ID}}
	storeIn(t, n.local, young)
	if _, err := n.HandOff(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range others {
		if _, ok, err := peers.stores[p.Addr].Get(young.Key); err != nil || !ok {
			t.Errorf("%s lacks the young write after hand-off: %v", p.Addr, err)
		}
	}
}

func TestRepairSettleDefault(t *testing.T) {
	for _, tc := range []struct {
		call, settle, want time.Duration
	}{
		{3 * time.Second, 0, 6 * time.Second},
		{0, 0, 2 * DefaultConfig().CallTimeout},
		{time.Second, time.Minute, time.Minute},
		{time.Second, -1, -1},
	} {
		c := Config{CallTimeout: tc.call, RepairSettle: tc.settle}
		c.withDefaults()
		if c.RepairSettle != tc.want {
			t.Errorf("CallTimeout %v, RepairSettle %v: got %v, want %v", tc.call, tc.settle, c.RepairSettle, tc.want)
		}
	}
}

// TestAntiEntropyIgnoresWritesInFlight: under a write load most buckets
// hold a write one replica has and another has not yet; with a settle time
// those buckets must not count as differing (settled digests), so a round
// compares nothing key by key. Without one they do.
func TestAntiEntropyIgnoresWritesInFlight(t *testing.T) {
	old := store.HLCAt(time.Now().Add(-time.Hour))
	young := store.HLCAt(time.Now())
	writer := chord.NewPeer("w:1").ID
	for _, tc := range []struct {
		name     string
		settle   time.Duration
		wantDiff bool
	}{
		{"settled digests agree", time.Hour, false},
		{"plain digests differ", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, peers, others := newTestNodeWith(t, func(c *Config) { c.RepairSettle = tc.settle })
			b := peers.stores[others[0].Addr]
			var common, inFlight []store.Entry
			for i := range 2000 {
				common = append(common, store.Entry{Key: []byte(fmt.Sprintf("k%05d", i)), Value: []byte("v"), Version: store.Version{HLC: old, Node: writer}})
				if i%4 == 0 {
					inFlight = append(inFlight, store.Entry{Key: []byte(fmt.Sprintf("k%05d", i)), Value: []byte("w"), Version: store.Version{HLC: young, Node: writer}})
				}
			}
			for _, s := range []Local{n.local, b} {
				storeIn(t, s, common...)
			}
			storeIn(t, n.local, inFlight...)
			nb := n.ring.Neighbors()
			diff, err := n.syncRange(ctx, others[0], nb.Predecessor.ID, n.self.ID, exchangeSettled)
			if err != nil {
				t.Fatal(err)
			}
			if (diff > 0) != tc.wantDiff {
				t.Errorf("%d buckets differ; want some: %v", diff, tc.wantDiff)
			}
		})
	}
}

// Within the buckets a settled difference makes anti-entropy compare key by
// key, it still moves only settled versions: a key written less than
// RepairSettle ago is the write path's to finish, and moving it would race
// with it for nothing.
func TestAntiEntropyMovesOnlySettledKeys(t *testing.T) {
	old := store.HLCAt(time.Now().Add(-time.Hour))
	young := store.HLCAt(time.Now())
	writer := chord.NewPeer("w:1").ID
	n, peers, others := newTestNodeWith(t, func(c *Config) { c.RepairSettle = time.Hour })
	b := peers.stores[others[0].Addr]
	var both, missing, inFlight []store.Entry
	for i := range 2000 {
		e := store.Entry{Key: []byte(fmt.Sprintf("k%05d", i)), Value: []byte("v"), Version: store.Version{HLC: old, Node: writer}}
		switch {
		case i%10 == 0: // settled, and only here: anti-entropy's to move
			missing = append(missing, e)
		case i%10 == 1: // settled in both, rewritten here a moment ago
			both = append(both, e)
			inFlight = append(inFlight, store.Entry{Key: e.Key, Value: []byte("w"), Version: store.Version{HLC: young, Node: writer}})
		default:
			both = append(both, e)
		}
	}
	storeIn(t, b, both...)
	storeIn(t, n.local, both...)
	storeIn(t, n.local, missing...)
	storeIn(t, n.local, inFlight...)
	nb := n.ring.Neighbors()
	if _, err := n.syncRange(ctx, others[0], nb.Predecessor.ID, n.self.ID, exchangeSettled); err != nil {
		t.Fatal(err)
	}
	for _, e := range missing {
		if got, ok, err := b.Get(e.Key); err != nil || !ok || got.Version != e.Version {
			t.Fatalf("settled key %s not repaired: %v, %v", e.Key, ok, err)
		}
	}
	for _, e := range inFlight {
		if got, _, err := b.Get(e.Key); err != nil || got.Version == e.Version {
			t.Fatalf("key %s written a moment ago was moved by anti-entropy (%v)", e.Key, err)
		}
	}
}

// A joiner's take-over that a replica does not answer is tried again until
// it completes: until then reads go to the successor, so giving up at once
// would put the joiner to work on a partial copy.
func TestSyncAfterJoinRetriesAFailedTakeOver(t *testing.T) {
	n, peers, others := newTestNodeWith(t, func(c *Config) { c.JoinSyncTimeout = 10 * time.Second })
	entry := store.Entry{Key: []byte("k"), Value: []byte("v"), Version: store.Version{HLC: 1, Node: others[1].ID}}
	if _, err := peers.stores[others[1].Addr].Apply(entry); err != nil {
		t.Fatal(err)
	}
	peers.setDead(others[1], true)
	revived := make(chan struct{})
	go func() {
		time.Sleep(200 * time.Millisecond)
		peers.setDead(others[1], false)
		close(revived)
	}()
	if err := n.SyncAfterJoin(ctx); err != nil {
		t.Fatalf("SyncAfterJoin: %v", err)
	}
	select {
	case <-revived:
	default:
		t.Fatal("SyncAfterJoin returned while a replica was still down")
	}
	if e, found, err := n.local.Get([]byte("k")); err != nil || !found || string(e.Value) != "v" {
		t.Errorf("the key only the revived replica held: %q, found %v, %v", e.Value, found, err)
	}
}

// syncRecorder counts a local store's repair writes (ApplyUncached) and
// their sync waits, and fails the sync of write number failAt (from 1).
type syncRecorder struct {
	Local
	failAt        int
	writes, waits int
	// mostPending is the most writes not yet waited for when a new
	// write started.
	mostPending int
}

func (r *syncRecorder) ApplyUncached(entries ...store.Entry) ([]bool, func() error, error) {
	r.mostPending = max(r.mostPending, r.writes-r.waits)
	applied, wait, err := r.Local.ApplyUncached(entries...)
	if err != nil {
		return applied, wait, err
	}
	r.writes++
	fail := r.writes == r.failAt
	return applied, func() error {
		r.waits++
		if err := wait(); err != nil || !fail {
			return err
		}
		return errSyncFailed
	}, nil
}

// A take-over's pull lets each batch's fsync overlap the receipt of the
// next (syncRange, pullAll), but it must wait for every batch to be
// durable before it returns, report a batch that is not, and never start a
// write while another waits for its sync (a store Close in between would
// then deadlock).
func TestPullWaitsForEveryBatchToBeDurable(t *testing.T) {
	for _, tt := range []struct {
		name   string
		failAt int // the write whose sync fails: 0 none, -1 the last
	}{
		{"every batch durable", 0},
		{"a middle batch's sync fails", 3},
		{"the first batch's sync fails", 1},
		{"the last batch's sync fails", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, peers, others := newTestNode(t)
			source := peers.stores[others[0].Addr]
			buckets := map[int]bool{}
			for i := range 300 {
				key := fmt.Appendf(nil, "key-%d", i)
				buckets[store.BucketOf(ring.HashKey(key))] = true
				if _, err := source.Apply(store.Entry{Key: key, Value: []byte("v"), Version: store.Version{HLC: 1, Node: others[0].ID}}); err != nil {
					t.Fatal(err)
				}
			}
			rec := &syncRecorder{Local: n.local, failAt: tt.failAt}
			if tt.failAt < 0 {
				rec.failAt = len(buckets) // the fake Fetch sends a batch per bucket
			}
			n.local = rec
			self := n.self.ID
			_, err := n.syncRange(ctx, others[0], self, self, pullAll)
			if (err != nil) != (tt.failAt != 0) {
				t.Errorf("syncRange: %v; want an error: %v", err, tt.failAt != 0)
			}
			if rec.waits != rec.writes {
				t.Errorf("%d batches written, %d waited for", rec.writes, rec.waits)
			}
			if rec.mostPending > 0 {
				t.Errorf("a batch was written while %d others were not yet durable", rec.mostPending)
			}
			if tt.failAt == 0 && rec.writes != len(buckets) {
				t.Errorf("%d batches written, want %d", rec.writes, len(buckets))
			}
		})
	}
}

// A take-over starts only on a view that names every replica set it reads
// from (knowsReplicaSets).
func TestKnowsReplicaSets(t *testing.T) {
	a, b, c, d := chord.NewPeer("a:1"), chord.NewPeer("b:1"), chord.NewPeer("c:1"), chord.NewPeer("d:1")
	tests := []struct {
		name  string
		pred  chord.Peer
		succs []chord.Peer
		want  bool
	}{
		{"no predecessor yet", chord.Peer{}, []chord.Peer{a, b, c}, false},
		{"no successor yet", a, nil, false},
		{"a large ring, r-1 successors", d, []chord.Peer{a, b}, true},
		{"a large ring, too few successors", d, []chord.Peer{a}, false},
		{"a ring of two", a, []chord.Peer{a}, true},
		{"a ring of three, the list reaches round", b, []chord.Peer{a, b}, true},
		{"a ring of four, the list reaches round", c, []chord.Peer{a, b, c}, true},
		{"the successor taken for the predecessor", a, []chord.Peer{a, b, c}, false},
		{"a predecessor amid the list", b, []chord.Peer{a, b, c}, false},
	}
	n, _, _ := newTestNode(t) // r = 3
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nb := chord.Neighbors{Predecessor: tt.pred, Successors: tt.succs}
			if got := n.knowsReplicaSets(nb); got != tt.want {
				t.Errorf("knowsReplicaSets(pred %q, successors %v) = %v, want %v", tt.pred.Addr, chord.Addrs(tt.succs), got, tt.want)
			}
		})
	}
}

// pausingFetch delivers a pull's first batch, then waits for resume before
// the rest, so that a test can act between two batches.
type pausingFetch struct {
	*fakePeers
	paused, resume chan struct{}
}

func (p pausingFetch) Fetch(ctx context.Context, peer chord.Peer, a, b ring.ID, buckets []int, fn func([]store.Entry) error) error {
	first := true
	return p.fakePeers.Fetch(ctx, peer, a, b, buckets, func(batch []store.Entry) error {
		if !first {
			return fn(batch)
		}
		first = false
		if err := fn(batch); err != nil {
			return err
		}
		close(p.paused)
		<-p.resume
		return nil
	})
}

// A node closing its store (shutting down) in the middle of a take-over's
// pull must not deadlock it: the store's Close waits for the sync of the
// batch written last, and holds off new writes meanwhile.
func TestPullSurvivesTheStoreClosing(t *testing.T) {
	n, peers, others := newTestNode(t)
	local, err := store.Open(store.Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	n.local = local
	for i := range 100 {
		key := fmt.Appendf(nil, "key-%d", i)
		if _, err := peers.stores[others[0].Addr].Apply(store.Entry{Key: key, Value: []byte("v"), Version: store.Version{HLC: 1, Node: others[0].ID}}); err != nil {
			t.Fatal(err)
		}
	}
	fetch := pausingFetch{fakePeers: peers, paused: make(chan struct{}), resume: make(chan struct{})}
	n.peers = fetch
	pulled := make(chan error, 1)
	go func() {
		_, err := n.syncRange(ctx, others[0], n.self.ID, n.self.ID, pullAll)
		pulled <- err
	}()
	<-fetch.paused
	closed := make(chan error, 1)
	go func() { closed <- local.Close() }()
	time.Sleep(50 * time.Millisecond) // let Close start waiting
	close(fetch.resume)
	for _, ch := range []struct {
		what string
		done chan error
	}{{"the pull", pulled}, {"Close", closed}} {
		select {
		case err := <-ch.done:
			t.Logf("%s returned %v", ch.what, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not return: deadlocked", ch.what)
		}
	}
}

package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/ring"
)

// recordingEngine is a memory engine that remembers the sync flag of every
// write and can be told to fail writes.
type recordingEngine struct {
	*memEngine
	syncs []bool
	fail  error
}

func (r *recordingEngine) Write(ops []Op, sync bool) error {
	r.syncs = append(r.syncs, sync)
	if r.fail != nil {
		return r.fail
	}
	return r.memEngine.Write(ops, sync)
}

// TestApplyWritesAreSynced checks the durability contract the key cache
// must not change: every Apply that writes reaches the engine as one synced
// batch, whether the old version came from the cache or the engine, so an
// acknowledged write is durable before Apply returns.
func TestApplyWritesAreSynced(t *testing.T) {
	eng := &recordingEngine{memEngine: newMemEngine()}
	s := mustOpen(t, Options{Engine: eng, Logger: quiet})
	defer s.Close()
	mustApply(t, s, put("k", 1, 1, "a"))                 // engine read: absent
	mustApply(t, s, put("k", 2, 1, "b"))                 // cache hit
	mustApply(t, s, put("k", 1, 1, "old"))               // loses: no write
	mustApply(t, s, del("k", 3, 1), put("j", 1, 1, "c")) // one batch
	if want := []bool{true, true, true}; fmt.Sprint(eng.syncs) != fmt.Sprint(want) {
		t.Errorf("engine writes synced = %v, want %v", eng.syncs, want)
	}
}

// TestKeyCacheForgetsFailedWrites: after a write whose outcome is
// unknown, the next Apply must read the engine, not trust the version it
// tried to write.
func TestKeyCacheForgetsFailedWrites(t *testing.T) {
	eng := &recordingEngine{memEngine: newMemEngine()}
	s := mustOpen(t, Options{Engine: eng, Logger: quiet})
	defer s.Close()
	mustApply(t, s, put("k", 1, 1, "a"))
	eng.fail = errors.New("disk on fire")
	if _, err := s.Apply(put("k", 5, 1, "lost")); err == nil {
		t.Fatal("Apply over a failing engine: no error")
	}
	eng.fail = nil
	// The engine still holds version 1, so version 3 must win.
	if got := mustApply(t, s, put("k", 3, 1, "c")); !got[0] {
		t.Error("write newer than the stored version refused: the cache kept the failed write")
	}
	checkAccounting(t, s)
}

// TestKeyCacheMatchesEngine runs a random mix of reads, writes, deletes,
// purges and tombstone collection with a tiny cache (so it evicts all the
// time), with the default cache and without one, on few
// enough keys that stripes collide, and checks that every store resolves
// every write the same way and keeps exact digests and stats.
func TestKeyCacheMatchesEngine(t *testing.T) {
	// No cache; a tiny one (about five keys per stripe, so it evicts all
	// the time); the default.
	sizes := []int64{-1, numStripes * 1000, 0}
	stores := make([]*Store, len(sizes))
	for i, n := range sizes {
		stores[i] = mustOpen(t, Options{InMemory: true, KeyCacheBytes: n, Logger: quiet})
		defer stores[i].Close()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	found := 0 // reads of a key the engine holds: what the key cache serves
	for step := range 5000 {
		key := fmt.Sprintf("key-%d", rng.IntN(600))
		hlc := uint64(rng.IntN(step + 10))
		var e Entry
		switch r := rng.IntN(1000); {
		case r < 5:
			var a, b ring.ID
			a[0], b[0] = byte(rng.IntN(256)), byte(rng.IntN(256))
			for i, s := range stores {
				if _, err := s.Purge(a, b); err != nil {
					t.Fatalf("store %d: %v", i, err)
				}
			}
			continue
		case r < 10:
			for i, s := range stores {
				if _, err := s.CollectTombstones(time.UnixMilli(int64(step))); err != nil {
					t.Fatalf("store %d: %v", i, err)
				}
			}
			continue
		case r < 15:
			cut := byte(rng.IntN(3))
			for i, s := range stores {
				if _, err := s.RemoveIf(ring.ID{}, ring.ID{}, func(e Entry) bool { return e.Version.Node[0] == cut }); err != nil {
					t.Fatalf("store %d: %v", i, err)
				}
			}
			continue
		case r < 300:
			// Reads, cached or not, see exactly what the engine holds.
			want, wantOK, _ := stores[0].Get([]byte(key))
			if wantOK {
				found++
			}
			for i, s := range stores[1:] {
				got, ok, err := s.Get([]byte(key))
				if err != nil || ok != wantOK || got.Version != want.Version || got.Tombstone != want.Tombstone || string(got.Value) != string(want.Value) {
					t.Fatalf("step %d: get %s from store %d = %+v %v %v; uncached %+v %v", step, key, i+1, got, ok, err, want, wantOK)
				}
			}
			continue
		case r < 450:
			e = del(key, hlc, byte(rng.IntN(3)))
		default:
			e = put(key, hlc, byte(rng.IntN(3)), fmt.Sprint(step))
		}
		var want []bool
		for i, s := range stores {
			got := mustApply(t, s, e)
			if i == 0 {
				want = got
			} else if got[0] != want[0] {
				t.Fatalf("step %d: store with cache budget %d applied=%v, uncached %v", step, sizes[i], got[0], want[0])
			}
		}
	}
	if found < 150 {
		t.Fatalf("only %d reads found their key: too few to check the key cache", found)
	}
	for i, s := range stores {
		checkAccounting(t, s)
		if s.Stats() != stores[0].Stats() {
			t.Errorf("store %d: stats %+v, uncached %+v", i, s.Stats(), stores[0].Stats())
		}
	}
}

// The production engine takes the path that releases stripe locks before
// the fsync wait.
var _ deferredSyncer = (*pebbleEngine)(nil)

// TestConcurrentWritersOfOneKey has many writers race on a few keys, so
// that a writer often finds its key's previous write still waiting for its
// fsync (the stripe lock is released by then): every key must end at the
// newest version written, with exact digests and stats.
func TestConcurrentWritersOfOneKey(t *testing.T) {
	forEngines(t, func(t *testing.T, s *Store) {
		const writers, rounds, keys = 16, 50, 4
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range rounds {
					e := put(fmt.Sprintf("k%d", i%keys), uint64(i*writers+w+1), byte(w), fmt.Sprint(w))
					if _, err := s.Apply(e); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		for k := range keys {
			want := uint64(0)
			for i := range rounds {
				if i%keys == k {
					want = max(want, uint64(i*writers+writers))
				}
			}
			e, ok, err := s.Get(fmt.Appendf(nil, "k%d", k))
			if err != nil || !ok || e.Version.HLC != want {
				t.Errorf("k%d: version %d (ok %v, err %v), want %d", k, e.Version.HLC, ok, err, want)
			}
		}
		checkAccounting(t, s)
	})
}

// A range moving through a node (ApplyUncached) must not evict the keys
// clients use, and must still keep them current.
func TestApplyUncachedKeepsClientKeysCached(t *testing.T) {
	s := mustOpen(t, Options{InMemory: true, Logger: quiet, KeyCacheBytes: 256 << 10})
	defer s.Close()
	cached := func(key string) bool {
		c, _ := s.stripes[s.stripeOf([]byte(key))].cache.lookup([]byte(key))
		return c != nil
	}
	mustApply(t, s, put("hot", 1, 1, "v1"))
	if !cached("hot") {
		t.Fatal("a client's write was not cached")
	}
	// Ten times the cache's budget of keys arrive by a take-over.
	var moved []Entry
	for i := range 10 * (256 << 10) / keyCost([]byte("moved-0000000"), 8) {
		moved = append(moved, put(fmt.Sprintf("moved-%07d", i), 1, 2, "value-xx"))
	}
	for i := 0; i < len(moved); i += 256 {
		applyUncached(t, s, moved[i:min(i+256, len(moved))]...)
	}
	applyUncached(t, s, put("hot", 2, 2, "v2"), put("moved-0000000", 3, 2, "newer"))
	if !cached("hot") {
		t.Error("the client's key was evicted by keys moving through")
	}
	for _, key := range []string{"moved-0000001", "moved-0000000"} {
		if cached(key) {
			t.Errorf("%s, moved through, was cached", key)
		}
	}
	for key, want := range map[string]string{"hot": "v2", "moved-0000000": "newer", "moved-0000002": "value-xx"} {
		if e, ok, err := s.Get([]byte(key)); err != nil || !ok || string(e.Value) != want {
			t.Errorf("Get(%s) = %q, %v, %v; want %q", key, e.Value, ok, err, want)
		}
	}
}

func applyUncached(t *testing.T, s *Store, es ...Entry) {
	t.Helper()
	_, wait, err := s.ApplyUncached(es...)
	if err == nil {
		err = wait()
	}
	if err != nil {
		t.Fatal(err)
	}
}

package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/ring"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// engine is one way of opening a Store; every behavioural test runs on all.
type engine struct {
	name string
	// open returns a Store over dir; reopening the same dir must find the
	// data again only when durable is true.
	open    func(tb testing.TB, dir string) *Store
	durable bool
}

var engines = []engine{
	{name: "memory", open: func(tb testing.TB, _ string) *Store {
		return mustOpen(tb, Options{InMemory: true, Logger: quiet})
	}},
	{name: "pebble", durable: true, open: func(tb testing.TB, dir string) *Store {
		return mustOpen(tb, Options{Dir: dir, Logger: quiet})
	}},
}

func mustOpen(tb testing.TB, o Options) *Store {
	tb.Helper()
	s, err := Open(o)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// forEngines runs f once per engine on a fresh store closed at the end.
func forEngines(t *testing.T, f func(t *testing.T, s *Store)) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			s := eng.open(t, t.TempDir())
			defer s.Close()
			f(t, s)
		})
	}
}

func put(key string, hlc uint64, n byte, value string) Entry {
	return Entry{Key: []byte(key), Value: []byte(value), Version: Version{hlc, node(n)}}
}

func del(key string, hlc uint64, n byte) Entry {
	return Entry{Key: []byte(key), Version: Version{hlc, node(n)}, Tombstone: true}
}

func mustApply(t testing.TB, s *Store, es ...Entry) []bool {
	t.Helper()
	applied, err := s.Apply(es...)
	if err != nil {
		t.Fatal(err)
	}
	return applied
}

// dump returns the whole ring's entries in ring order.
func dump(t testing.TB, s *Store) []Entry {
	t.Helper()
	var out []Entry
	if err := s.Scan(ring.ID{}, ring.ID{}, func(e Entry) bool { out = append(out, e); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameEntries(a, b []Entry) bool {
	return slices.EqualFunc(a, b, entriesEqual)
}

func TestApplyLastWriterWins(t *testing.T) {
	type step struct {
		e       Entry
		applied bool
	}
	tests := []struct {
		name  string
		steps []step
		want  Entry // final state of key "k"
		found bool
	}{
		{"first write", []step{{put("k", 10, 1, "a"), true}}, put("k", 10, 1, "a"), true},
		{"newer HLC replaces", []step{{put("k", 10, 1, "a"), true}, {put("k", 11, 1, "b"), true}}, put("k", 11, 1, "b"), true},
		{"older HLC ignored", []step{{put("k", 11, 1, "b"), true}, {put("k", 10, 9, "a"), false}}, put("k", 11, 1, "b"), true},
		{"equal version is a no-op", []step{{put("k", 10, 1, "a"), true}, {put("k", 10, 1, "other"), false}}, put("k", 10, 1, "a"), true},
		{"same HLC: higher node wins", []step{{put("k", 10, 1, "a"), true}, {put("k", 10, 2, "b"), true}, {put("k", 10, 1, "c"), false}}, put("k", 10, 2, "b"), true},
		{"tombstone hides older value", []step{{put("k", 10, 1, "a"), true}, {del("k", 11, 1), true}}, del("k", 11, 1), true},
		{"older value loses to tombstone", []step{{del("k", 11, 1), true}, {put("k", 10, 1, "a"), false}}, del("k", 11, 1), true},
		{"newer write beats tombstone", []step{{del("k", 11, 1), true}, {put("k", 12, 1, "b"), true}}, put("k", 12, 1, "b"), true},
		{"stale tombstone ignored", []step{{put("k", 12, 1, "b"), true}, {del("k", 11, 3), false}}, put("k", 12, 1, "b"), true},
	}
	forEngines(t, func(t *testing.T, s *Store) {
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				key := fmt.Sprintf("k%d", i) // one key per case, one store per engine
				for j, st := range tt.steps {
					st.e.Key = []byte(key)
					if got := mustApply(t, s, st.e); got[0] != st.applied {
						t.Errorf("step %d: applied = %v, want %v", j, got[0], st.applied)
					}
				}
				got, ok, err := s.Get([]byte(key))
				if err != nil || ok != tt.found {
					t.Fatalf("Get: ok=%v err=%v, want ok=%v", ok, err, tt.found)
				}
				want := tt.want
				want.Key = []byte(key)
				if !entriesEqual(got, want) {
					t.Errorf("Get = %+v, want %+v", got, want)
				}
			})
		}
		if _, ok, err := s.Get([]byte("never")); ok || err != nil {
			t.Errorf("Get(never written) = ok %v, err %v", ok, err)
		}
	})
}

func TestApplyBatch(t *testing.T) {
	forEngines(t, func(t *testing.T, s *Store) {
		mustApply(t, s, put("x", 5, 1, "old"))
		got := mustApply(t, s,
			put("a", 1, 1, "a1"),
			put("a", 3, 1, "a3"), // newest of the duplicates wins
			put("a", 2, 1, "a2"),
			put("x", 4, 1, "stale"),
			del("y", 1, 1),
			put("a", 3, 1, "a3-dup"), // equal to the winner: first one kept
		)
		if want := []bool{false, true, false, false, true, false}; !slices.Equal(got, want) {
			t.Errorf("applied = %v, want %v", got, want)
		}
		e, _, _ := s.Get([]byte("a"))
		if string(e.Value) != "a3" {
			t.Errorf("a = %q, want a3", e.Value)
		}
		if st := s.Stats(); st != (Stats{Keys: 2, Tombstones: 1, Bytes: 1 + 2 + 1 + 3 + 1}) {
			t.Errorf("Stats = %+v", st)
		}
		if _, err := s.Apply(Entry{Version: Version{1, node(1)}}); err == nil {
			t.Error("empty key accepted")
		}
		if _, err := s.Apply(Entry{Key: []byte("t"), Value: []byte("v"), Tombstone: true}); err == nil {
			t.Error("tombstone with a value accepted")
		}
	})
}

// history is a random mix of writes and deletes over a few keys, with stale
// versions and duplicate deliveries, as replication and read repair deliver
// them. A version names one write: repeats of a version repeat its entry.
func history(rng *rand.Rand, keys, n int) []Entry {
	type kv struct {
		key string
		v   Version
	}
	seen := map[kv]Entry{}
	var h []Entry
	for range n {
		k := fmt.Sprintf("key-%d", rng.IntN(keys))
		hlc, nd := uint64(rng.IntN(20)), byte(rng.IntN(3))
		id := kv{k, Version{hlc, node(nd)}}
		e, ok := seen[id]
		switch {
		case ok:
		case rng.IntN(4) == 0:
			e = del(k, hlc, nd)
		default:
			e = put(k, hlc, nd, fmt.Sprintf("%s@%d.%d", k, hlc, nd))
		}
		seen[id] = e
		h = append(h, e)
	}
	return h
}

// lww computes the expected final state of a history.
func lww(h []Entry) []Entry {
	best := map[string]Entry{}
	for _, e := range h {
		if cur, ok := best[string(e.Key)]; !ok || e.Version.After(cur.Version) {
			best[string(e.Key)] = e
		}
	}
	out := make([]Entry, 0, len(best))
	for _, e := range best {
		out = append(out, e)
	}
	sortRing(out)
	return out
}

func sortRing(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int { return bytes.Compare(storageKey(a.Key), storageKey(b.Key)) })
}

func TestApplyOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := history(rng, 10, 200)
	want := lww(h)
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			var firstDigests []BucketDigest
			for p := range 5 {
				perm := slices.Clone(h)
				rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
				s := eng.open(t, t.TempDir())
				// Some one at a time, the rest in batches.
				for i := 0; i < len(perm); {
					n := 1 + rng.IntN(5)*(p%2)
					mustApply(t, s, perm[i:min(i+n, len(perm))]...)
					i += n
				}
				if got := dump(t, s); !sameEntries(got, want) {
					t.Fatalf("permutation %d: state differs from LWW:\n got %v\nwant %v", p, got, want)
				}
				d, err := s.BucketDigests(ring.ID{}, ring.ID{})
				if err != nil {
					t.Fatal(err)
				}
				if p == 0 {
					firstDigests = d
				} else if !slices.Equal(d, firstDigests) {
					t.Fatalf("permutation %d: digests differ", p)
				}
				checkAccounting(t, s)
				s.Close()
			}
		})
	}
}

func TestApplyConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	h := history(rng, 8, 2000)
	want := lww(h)
	forEngines(t, func(t *testing.T, s *Store) {
		const workers = 8
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < len(h); i += workers {
					if _, err := s.Apply(h[i]); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if got := dump(t, s); !sameEntries(got, want) {
			t.Fatalf("concurrent state differs from LWW:\n got %v\nwant %v", got, want)
		}
		checkAccounting(t, s)
	})
}

// checkAccounting recomputes stats and digests from a scan and compares them
// with the incrementally maintained ones.
func checkAccounting(t testing.TB, s *Store) {
	t.Helper()
	var st Stats
	var dig [NumBuckets]uint64
	for _, e := range dump(t, s) {
		if e.Tombstone {
			st.Tombstones++
		} else {
			st.Keys++
		}
		st.Bytes += storedSize(&e)
		sk := storageKey(e.Key)
		dig[BucketOf(ring.ID(sk[:idLen]))] ^= entryHash(sk, &e)
	}
	if got := s.Stats(); got != st {
		t.Errorf("Stats = %+v, recomputed %+v", got, st)
	}
	s.acctMu.Lock()
	defer s.acctMu.Unlock()
	if s.digest != dig {
		t.Error("maintained digests differ from recomputed ones")
	}
}

func TestCollectTombstones(t *testing.T) {
	forEngines(t, func(t *testing.T, s *Store) {
		now := time.UnixMilli(1_800_000_000_000)
		grace := time.Hour
		old, recent := HLCAt(now.Add(-2*grace)), HLCAt(now.Add(-grace/2))
		mustApply(t, s,
			del("old-tomb", old, 1),
			del("recent-tomb", recent, 1),
			put("old-value", old, 1, "v"),
			del("old-tomb-2", old+5, 2),
		)
		n, err := s.CollectTombstones(now.Add(-grace))
		if err != nil || n != 2 {
			t.Fatalf("CollectTombstones = %d, %v; want 2", n, err)
		}
		for key, want := range map[string]bool{"old-tomb": false, "old-tomb-2": false, "recent-tomb": true, "old-value": true} {
			if _, ok, _ := s.Get([]byte(key)); ok != want {
				t.Errorf("%s present = %v, want %v", key, ok, want)
			}
		}
		if st := s.Stats(); st.Tombstones != 1 || st.Keys != 1 {
			t.Errorf("Stats after GC = %+v", st)
		}
		checkAccounting(t, s)
		// After collection a stale write is accepted again: the reason the
		// grace period must outlast any replica's absence.
		if got := mustApply(t, s, put("old-tomb", old-1, 1, "zombie")); !got[0] {
			t.Error("write to a collected key was refused")
		}
		if n, _ := s.CollectTombstones(now.Add(-grace)); n != 0 {
			t.Errorf("second collection removed %d", n)
		}
	})
}

// ringKeys are 500 keys sorted by ring position.
var ringKeys = func() [][]byte {
	var ks [][]byte
	for i := range 500 {
		ks = append(ks, fmt.Appendf(nil, "key-%03d", i))
	}
	slices.SortFunc(ks, func(a, b []byte) int { return bytes.Compare(storageKey(a), storageKey(b)) })
	return ks
}()

func pos(k []byte) ring.ID { return ring.HashKey(k) }

func maxID() ring.ID {
	var id ring.ID
	for i := range id {
		id[i] = 0xff
	}
	return id
}

// intervals exercises Scan and digests: plain, wrapping, whole ring, ends on
// existing keys, bucket edges and the ends of the ID space.
func intervals() []struct {
	name string
	a, b ring.ID
} {
	k := func(i int) ring.ID { return pos(ringKeys[i]) }
	bucketStart := func(b int) ring.ID { f, _ := bucketFirstLast(b); return f }
	bucketEnd := func(b int) ring.ID { _, l := bucketFirstLast(b); return l }
	return []struct {
		name string
		a, b ring.ID
	}{
		{"inside", k(100), k(300)},
		{"one key", k(100), k(101)},
		{"empty", k(100), k(100 + 0)}, // a == b: whole ring
		{"wraps past zero", k(400), k(50)},
		{"wraps, a at max", maxID(), k(50)},
		{"from zero", ring.ID{}, k(250)},
		{"to max", k(250), maxID()},
		{"whole ring at zero", ring.ID{}, ring.ID{}},
		{"whole ring at max", maxID(), maxID()},
		{"bucket aligned", bucketEnd(1000), bucketEnd(3000)},
		{"bucket starts", bucketStart(1000), bucketStart(3000)},
		{"within one bucket", bucketStart(2048), bucketEnd(2048)},
		{"wraps within one bucket", k(301), k(300)},
	}
}

func TestScan(t *testing.T) {
	forEngines(t, func(t *testing.T, s *Store) {
		for i, k := range ringKeys {
			e := put(string(k), uint64(i+1), 1, "v")
			if i%7 == 0 {
				e = del(string(k), uint64(i+1), 1)
			}
			mustApply(t, s, e)
		}
		for _, iv := range intervals() {
			t.Run(iv.name, func(t *testing.T) {
				var want [][]byte
				// Expected: keys in (a, b], in ring order starting after a.
				start, found := slices.BinarySearchFunc(ringKeys, iv.a, func(k []byte, id ring.ID) int {
					p := pos(k)
					return bytes.Compare(p[:], id[:])
				})
				if found {
					start++ // a key at a itself comes last
				}
				for j := range ringKeys {
					k := ringKeys[(start+j)%len(ringKeys)]
					if ring.BetweenRightIncl(iv.a, pos(k), iv.b) {
						want = append(want, k)
					}
				}
				var got [][]byte
				if err := s.Scan(iv.a, iv.b, func(e Entry) bool { got = append(got, e.Key); return true }); err != nil {
					t.Fatal(err)
				}
				if !slices.EqualFunc(got, want, bytes.Equal) {
					t.Errorf("Scan(%s, %s] = %d keys, want %d\n got %q\nwant %q", iv.a.Short(), iv.b.Short(), len(got), len(want), got, want)
				}
				// Early stop.
				n := 0
				if err := s.Scan(iv.a, iv.b, func(Entry) bool { n++; return n < 3 }); err != nil {
					t.Fatal(err)
				}
				if n != min(3, len(want)) {
					t.Errorf("early stop after %d calls, want %d", n, min(3, len(want)))
				}
			})
		}
	})
}

func TestDigests(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			// Replicas a and b hold the same entries inside every interval
			// checked, reached in different orders; b also holds extra keys
			// outside [lo, hi] that a must not see in digests over (lo, hi].
			var es []Entry
			for i, k := range ringKeys {
				es = append(es, put(string(k), uint64(i+1), 1, "v"))
				if i%5 == 0 {
					es = append(es, del(string(k), uint64(i+2), 2))
				}
			}
			ra, rb := eng.open(t, t.TempDir()), eng.open(t, t.TempDir())
			defer ra.Close()
			defer rb.Close()
			mustApply(t, ra, es...)
			perm := slices.Clone(es)
			rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
			for _, e := range perm {
				mustApply(t, rb, e)
			}
			for _, iv := range intervals() {
				da, err := ra.BucketDigests(iv.a, iv.b)
				if err != nil {
					t.Fatal(err)
				}
				db, _ := rb.BucketDigests(iv.a, iv.b)
				if !slices.Equal(da, db) {
					t.Errorf("%s: equal contents, different digests", iv.name)
				}
				checkDigestsMatchEntries(t, ra, iv.a, iv.b, da)
			}

			// Extra data outside (lo, hi] on b only: digests over (lo, hi]
			// still agree, including the two edge buckets.
			lo, hi := pos(ringKeys[100]), pos(ringKeys[300])
			mustApply(t, rb, put(string(ringKeys[100]), 9999, 3, "edge-a, outside"), put(string(ringKeys[301]), 9999, 3, "outside"))
			da, _ := ra.BucketDigests(lo, hi)
			db, _ := rb.BucketDigests(lo, hi)
			if !slices.Equal(da, db) {
				t.Error("differences outside (a, b] leak into its digests")
			}

			// One differing write inside: exactly its bucket differs, and
			// BucketEntries shows the difference.
			k := ringKeys[200]
			mustApply(t, rb, put(string(k), 10_000, 3, "new"))
			db, _ = rb.BucketDigests(lo, hi)
			var diff []int
			for i := range da {
				if da[i] != db[i] {
					diff = append(diff, da[i].Bucket)
				}
			}
			if want := []int{BucketOf(pos(k))}; !slices.Equal(diff, want) {
				t.Fatalf("differing buckets %v, want %v", diff, want)
			}
			var got []Entry
			if err := rb.BucketEntries(diff[0], lo, hi, func(e Entry) bool { got = append(got, e); return true }); err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(got, func(e Entry) bool { return string(e.Value) == "new" }) {
				t.Errorf("BucketEntries of the differing bucket lacks the new write: %v", got)
			}
			if err := rb.BucketEntries(NumBuckets, lo, hi, func(Entry) bool { return true }); err == nil {
				t.Error("bucket out of range accepted")
			}
		})
	}
}

// checkDigestsMatchEntries recomputes each bucket's restricted digest from
// BucketEntries and checks the buckets listed are exactly those overlapping.
func checkDigestsMatchEntries(t *testing.T, s *Store, a, b ring.ID, ds []BucketDigest) {
	t.Helper()
	seen := map[int]bool{}
	for _, d := range ds {
		if seen[d.Bucket] {
			t.Fatalf("bucket %d listed twice", d.Bucket)
		}
		seen[d.Bucket] = true
		var x uint64
		err := s.BucketEntries(d.Bucket, a, b, func(e Entry) bool {
			x ^= entryHash(storageKey(e.Key), &e)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if x != d.Digest {
			t.Errorf("bucket %d: digest %x, entries give %x", d.Bucket, d.Digest, x)
		}
	}
	// Every entry of (a, b] falls in a listed bucket.
	_ = s.Scan(a, b, func(e Entry) bool {
		if !seen[BucketOf(pos(e.Key))] {
			t.Errorf("entry %q in (a, b] but its bucket is not listed", e.Key)
		}
		return true
	})
}

func TestPurge(t *testing.T) {
	forEngines(t, func(t *testing.T, s *Store) {
		for i, k := range ringKeys {
			mustApply(t, s, put(string(k), uint64(i+1), 1, "v"))
		}
		a, b := pos(ringKeys[450]), pos(ringKeys[49]) // wraps: keys 451..499 and 0..49
		n, err := s.Purge(a, b)
		if err != nil || n != 99 {
			t.Fatalf("Purge = %d, %v; want 99", n, err)
		}
		if got := len(dump(t, s)); got != 401 {
			t.Errorf("%d entries left, want 401", got)
		}
		if _, ok, _ := s.Get(ringKeys[0]); ok {
			t.Error("purged key still there")
		}
		checkAccounting(t, s)
	})
}

func TestPersistence(t *testing.T) {
	for _, eng := range engines {
		if !eng.durable {
			continue
		}
		t.Run(eng.name, func(t *testing.T) {
			dir := t.TempDir()
			s := eng.open(t, dir)
			rng := rand.New(rand.NewPCG(7, 8))
			mustApply(t, s, history(rng, 300, 3000)...)
			before := dump(t, s)
			stats := s.Stats()
			digests, _ := s.BucketDigests(ring.ID{}, ring.ID{})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Apply(put("late", 1, 1, "v")); err == nil {
				t.Error("Apply after Close succeeded")
			}
			if _, _, err := s.Get([]byte("late")); err == nil {
				t.Error("Get after Close succeeded")
			}

			s = eng.open(t, dir)
			defer s.Close()
			if got := dump(t, s); !sameEntries(got, before) {
				t.Error("contents differ after reopen")
			}
			if got := s.Stats(); got != stats {
				t.Errorf("Stats after reopen = %+v, want %+v", got, stats)
			}
			if got, _ := s.BucketDigests(ring.ID{}, ring.ID{}); !slices.Equal(got, digests) {
				t.Error("digests differ after reopen")
			}
		})
	}
}

func TestCorruptRecordIsSkippedAndRepaired(t *testing.T) {
	eng := newMemEngine()
	sk := storageKey([]byte("bad"))
	good := put("good", 1, 1, "v")
	if err := eng.Write([]Op{{Key: sk, Value: []byte{9, 9, 9}}, {Key: storageKey(good.Key), Value: encodeValue(&good)}}, true); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, Options{Engine: eng, Logger: quiet})
	defer s.Close()
	if st := s.Stats(); st.Keys != 1 {
		t.Errorf("Stats = %+v, want the good key only", st)
	}
	if got := dump(t, s); len(got) != 1 {
		t.Errorf("scan returned %d entries, want 1", len(got))
	}
	if _, _, err := s.Get([]byte("bad")); err == nil {
		t.Error("Get of a corrupt record: no error")
	}
	if got := mustApply(t, s, put("bad", 1, 1, "fixed")); !got[0] {
		t.Error("write over a corrupt record refused")
	}
	if e, ok, err := s.Get([]byte("bad")); err != nil || !ok || string(e.Value) != "fixed" {
		t.Errorf("after repair: %+v %v %v", e, ok, err)
	}
	checkAccounting(t, s)
}

// TestScanDuringWrites runs scans, digests and collections against
// concurrent writers, for the race detector and to check that a scan never
// returns an entry twice or out of ring order.
func TestScanDuringWrites(t *testing.T) {
	forEngines(t, func(t *testing.T, s *Store) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-done:
						return
					default:
					}
					e := put(fmt.Sprintf("k%d", (i*7+w)%300), uint64(i), byte(w), "v")
					if i%3 == 0 {
						e = del(string(e.Key), uint64(i), byte(w))
					}
					if _, err := s.Apply(e); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		for range 50 {
			var prev []byte
			err := s.Scan(ring.ID{}, ring.ID{}, func(e Entry) bool {
				sk := storageKey(e.Key)
				if prev != nil && bytes.Compare(prev, sk) >= 0 {
					t.Errorf("scan out of order: %x then %x", prev, sk)
				}
				prev = sk
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.BucketDigests(pos([]byte("a")), pos([]byte("b"))); err != nil {
				t.Fatal(err)
			}
			if _, err := s.CollectTombstones(time.UnixMilli(0).Add(time.Millisecond)); err != nil {
				t.Fatal(err)
			}
		}
		close(done)
		wg.Wait()
		checkAccounting(t, s)
	})
}

// TestApplyBatchesLookedUpInOneWalk checks Apply's lookup of many stored
// versions with one engine iterator (storedMany, sortedGetter): batches of
// 16 to 48 keys with the key cache off, so that every lookup reaches the
// engine, must report the same winners, and leave the same state, digests
// and accounting, as a model of last-writer-wins.
func TestApplyBatchesLookedUpInOneWalk(t *testing.T) {
	for _, eng := range []struct {
		name string
		open func(t *testing.T) *Store
	}{
		{"memory", func(t *testing.T) *Store {
			return mustOpen(t, Options{InMemory: true, Logger: quiet, KeyCacheBytes: -1})
		}},
		{"pebble", func(t *testing.T) *Store {
			return mustOpen(t, Options{Dir: t.TempDir(), Logger: quiet, KeyCacheBytes: -1})
		}},
	} {
		t.Run(eng.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			h := history(rng, 80, 2000)
			s := eng.open(t)
			defer s.Close()
			if _, ok := s.eng.(sortedGetter); !ok {
				t.Fatalf("%T does not look up sorted keys", s.eng)
			}
			model := map[string]Version{}
			for i := 0; i < len(h); {
				batch := h[i:min(i+16+rng.IntN(33), len(h))]
				i += len(batch)
				// The batch's winners: the newest entry per key (the first
				// of equals), if newer than what the model holds.
				want := make([]bool, len(batch))
				best := map[string]int{}
				for j, e := range batch {
					if k, ok := best[string(e.Key)]; !ok || e.Version.After(batch[k].Version) {
						best[string(e.Key)] = j
					}
				}
				for k, j := range best {
					if cur, ok := model[k]; !ok || batch[j].Version.After(cur) {
						want[j] = true
						model[k] = batch[j].Version
					}
				}
				if got := mustApply(t, s, batch...); !slices.Equal(got, want) {
					t.Fatalf("batch at %d: applied = %v, want %v", i-len(batch), got, want)
				}
			}
			if got, want := dump(t, s), lww(h); !sameEntries(got, want) {
				t.Fatalf("state differs from LWW:\n got %v\nwant %v", got, want)
			}
			checkAccounting(t, s)
		})
	}
}

// TestGetSorted checks each engine's lookup of sorted keys: present and
// absent keys, absent keys before, between and after the stored ones, and
// runs that end the iterator early.
func TestGetSorted(t *testing.T) {
	stored := []string{"b", "d", "f", "h"}
	tests := []struct {
		name string
		keys []string
	}{
		{"one present", []string{"d"}},
		{"one absent", []string{"c"}},
		{"all stored", []string{"b", "d", "f", "h"}},
		{"interleaved", []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}},
		{"gaps", []string{"b", "c1", "c2", "c3", "h"}},
		{"before all", []string{"a", "a1", "a2"}},
		{"after all", []string{"h1", "i", "z"}},
		{"prefix of stored", []string{"c", "d\x00", "f"}},
	}
	for _, eng := range []struct {
		name string
		open func(t *testing.T) Engine
	}{
		{"memory", func(*testing.T) Engine { return newMemEngine() }},
		{"pebble", func(t *testing.T) Engine {
			p, err := openPebble(pebbleConfig{dir: t.TempDir(), cacheBytes: 1 << 20, memTableBytes: 1 << 20, logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}},
	} {
		t.Run(eng.name, func(t *testing.T) {
			e := eng.open(t)
			defer e.Close()
			var ops []Op
			for _, k := range stored {
				ops = append(ops, Op{Key: []byte(k), Value: []byte("v-" + k)})
			}
			if err := e.Write(ops, false); err != nil {
				t.Fatal(err)
			}
			sg := e.(sortedGetter)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					var keys [][]byte
					for _, k := range tt.keys {
						keys = append(keys, []byte(k))
					}
					var got []string
					err := sg.GetSorted(keys, func(i int, v []byte, ok bool) error {
						if ok != slices.Contains(stored, tt.keys[i]) {
							t.Errorf("key %q: ok = %v", tt.keys[i], ok)
						}
						if ok && string(v) != "v-"+tt.keys[i] {
							t.Errorf("key %q: value %q", tt.keys[i], v)
						}
						got = append(got, tt.keys[i])
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got, tt.keys) {
						t.Errorf("called for %q, want each of %q in order", got, tt.keys)
					}
				})
			}
			stop := errors.New("stop")
			calls := 0
			err := sg.GetSorted([][]byte{[]byte("a"), []byte("b"), []byte("c")}, func(int, []byte, bool) error {
				calls++
				return stop
			})
			if !errors.Is(err, stop) || calls != 1 {
				t.Errorf("a callback's error: GetSorted returned %v after %d calls, want it after 1", err, calls)
			}
		})
	}
}

// RemoveIf deletes only the versions its scan matched: a key rewritten
// between the scan and the deletion stays, at its new version. 600 keys
// make two chunks of the re-read (512 and 88).
func TestRemoveIfKeepsKeysRewrittenMeanwhile(t *testing.T) {
	forEngines(t, func(t *testing.T, s *Store) {
		var all []Entry
		for i := range 600 {
			all = append(all, put(fmt.Sprintf("key-%03d", i), 1, 1, "old"))
		}
		mustApply(t, s, all...)
		sortRing(all)
		rewritten := map[string]bool{string(all[3].Key): true, string(all[590].Key): true}
		n, err := s.RemoveIf(ring.ID{}, ring.ID{}, func(e Entry) bool {
			if rewritten[string(e.Key)] {
				mustApply(t, s, put(string(e.Key), 2, 1, "new"))
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != len(all)-len(rewritten) {
			t.Errorf("removed %d, want %d", n, len(all)-len(rewritten))
		}
		for key := range rewritten {
			if e, ok, err := s.Get([]byte(key)); err != nil || !ok || string(e.Value) != "new" {
				t.Errorf("%s, rewritten during the scan: %q, found %v, %v; want new", key, e.Value, ok, err)
			}
		}
		checkAccounting(t, s)
	})
}

package store

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chordkv/chordkv/internal/ring"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Run with: go test -run XXX -bench . -benchtime 2s ./internal/store/
// The pebble numbers include a real fsync per Apply (shared under
// concurrency), so they depend on the disk.

func benchEngines(b *testing.B, f func(b *testing.B, s *Store)) {
	b.Run("memory", func(b *testing.B) {
		s := mustOpen(b, Options{InMemory: true, Logger: quiet})
		defer s.Close()
		f(b, s)
	})
	b.Run("pebble", func(b *testing.B) {
		fs := &syncCountingFS{FS: vfs.Default}
		s := mustOpen(b, Options{Dir: b.TempDir(), Logger: quiet, fs: fs})
		defer s.Close()
		before := fs.walSyncs.Load()
		f(b, s)
		b.ReportMetric(float64(fs.walSyncs.Load()-before)/float64(b.N), "walsyncs/op")
	})
}

// syncCountingFS counts syncs of WAL files, to show group commit at work.
type syncCountingFS struct {
	vfs.FS
	walSyncs atomic.Int64
}

func (fs *syncCountingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &syncCountingFile{File: f, n: &fs.walSyncs}, nil
}

func (fs *syncCountingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *syncCountingFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

type syncCountingFile struct {
	vfs.File
	n *atomic.Int64
}

func (f *syncCountingFile) Sync() error     { f.n.Add(1); return f.File.Sync() }
func (f *syncCountingFile) SyncData() error { f.n.Add(1); return f.File.SyncData() }
func (f *syncCountingFile) SyncTo(length int64) (bool, error) {
	f.n.Add(1)
	return f.File.SyncTo(length)
}

var benchValue = make([]byte, 100)

func benchEntry(i int) Entry {
	return Entry{Key: fmt.Appendf(nil, "bench-key-%09d", i), Value: benchValue, Version: Version{uint64(i + 1), node(1)}}
}

// BenchmarkApply is one writer: every Apply pays a full fsync.
func BenchmarkApply(b *testing.B) {
	benchEngines(b, func(b *testing.B, s *Store) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.Apply(benchEntry(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkApplyParallel has 16 writers per CPU: their synced batches share
// fsyncs (group commit), so throughput rises far above BenchmarkApply's.
func BenchmarkApplyParallel(b *testing.B) {
	benchEngines(b, func(b *testing.B, s *Store) {
		b.ReportAllocs()
		b.SetParallelism(16)
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Apply(benchEntry(int(n.Add(1)))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

const benchKeys = 10_000

func preload(b *testing.B, s *Store) {
	b.Helper()
	batch := make([]Entry, 0, 1000)
	for i := range benchKeys {
		batch = append(batch, benchEntry(i))
		if len(batch) == cap(batch) {
			if _, err := s.Apply(batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

func BenchmarkGet(b *testing.B) {
	benchEngines(b, func(b *testing.B, s *Store) {
		preload(b, s)
		rng := rand.New(rand.NewPCG(1, 1))
		b.ReportAllocs()
		for b.Loop() {
			key := fmt.Appendf(nil, "bench-key-%09d", rng.IntN(benchKeys))
			if _, ok, err := s.Get(key); !ok || err != nil {
				b.Fatalf("Get(%s): %v %v", key, ok, err)
			}
		}
	})
}

// BenchmarkScan walks a sixteenth of the ring (about 625 of 10,000 entries),
// the share of one node's range in a 16-node ring.
func BenchmarkScan(b *testing.B) {
	benchEngines(b, func(b *testing.B, s *Store) {
		preload(b, s)
		var lo, hi ring.ID
		lo[0], hi[0] = 0x10, 0x20
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			n = 0
			if err := s.Scan(lo, hi, func(Entry) bool { n++; return true }); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n), "entries/op")
	})
}

// BenchmarkBucketDigests computes the digests of a sixteenth of the ring
// with unaligned ends (two edge buckets scanned).
func BenchmarkBucketDigests(b *testing.B) {
	benchEngines(b, func(b *testing.B, s *Store) {
		preload(b, s)
		lo, hi := ring.HashKey([]byte("lo")), ring.HashKey([]byte("lo"))
		hi[0] += 0x10
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.BucketDigests(lo, hi); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBytesPerKey measures what one stored key costs on disk beyond
// its key and value bytes: chordkv's record (20-byte ring position prefix,
// 30-byte header) plus Pebble's own per-entry costs, after compressing
// nothing (the values are random). It counts every file, the write-ahead
// log included: Pebble does not flush its last memtable on close, so part
// of the data is there once in the log rather than in a table. It writes 100,000 keys of 16 bytes with
// 100-byte values, closes the store and sums the files in its directory.
//
// go test -run XXX -bench BytesPerKey -benchtime 1x ./internal/store
func BenchmarkBytesPerKey(b *testing.B) {
	const keys, valueLen = 100_000, 100
	for b.Loop() {
		dir := b.TempDir()
		s, err := Open(Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		batch := make([]Entry, 0, 1000)
		payload := 0
		for i := range keys {
			v := make([]byte, valueLen)
			for j := range v {
				v[j] = byte(rng.Uint32())
			}
			k := fmt.Appendf(nil, "key-%012d", i)
			payload += len(k) + len(v)
			batch = append(batch, Entry{Key: k, Value: v, Version: Version{HLC: uint64(i + 1)}})
			if len(batch) == cap(batch) {
				if _, err := s.Apply(batch...); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		var disk int64
		err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			info, err := d.Info()
			if err == nil {
				disk += info.Size()
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(disk)/keys, "disk-B/key")
		b.ReportMetric(float64(disk-int64(payload))/keys, "overhead-B/key")
		b.ReportMetric(float64(headerLen+idLen), "record-overhead-B/key")
	}
}

// BenchmarkApplyConcurrent is the shape of a node under `chordkv bench --op
// put --concurrency 64`: 32 writers per CPU overwrite random keys of a
// preloaded key space with ever newer versions, so every Apply replaces an
// existing entry (read of the old version, synced write, accounting).
func BenchmarkApplyConcurrent(b *testing.B) {
	benchEngines(b, func(b *testing.B, s *Store) {
		preload(b, s)
		var seq atomic.Uint64
		seq.Store(benchKeys)
		b.ReportAllocs()
		b.SetParallelism(32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(seq.Add(1), 7))
			for pb.Next() {
				e := benchEntry(rng.IntN(benchKeys))
				e.Version.HLC = seq.Add(1) + benchKeys
				if _, err := s.Apply(e); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// withoutSortedGet hides the engine's sortedGetter, so that every cache
// miss is looked up with its own Get: the comparison BenchmarkStoredRun
// makes.
type withoutSortedGet struct{ Engine }

// BenchmarkStoredRun looks up the stored versions of a batch of keys, as an
// Apply does before writing, in a Pebble store holding 200,000 keys, with
// the key cache off (a take-over's keys are not in it, nor are most of a
// large key space's). "absent" is a run of 256 neighbouring keys in the
// half of the ring the store holds nothing of (a joiner's new range);
// "present", a run of 256 stored keys (a restarted node catching up);
// "spread", 256 stored keys from all over the ring, and "spread16" 16 keys,
// half stored, half not (clients' batches). "get" looks each key up with
// its own Get, "sorted" with one iterator in ring order (GetSorted). Only
// the lookup is timed: the writes that follow are the same either way.
func BenchmarkStoredRun(b *testing.B) {
	const stored, run = 200_000, 256
	// Keys whose ring position starts below 0x80 are stored; the absent
	// runs take the others.
	var inside, outside [][]byte
	for i := 0; len(inside) < stored || len(outside) < stored/4; i++ {
		e := benchEntry(i)
		sk := storageKey(e.Key)
		if sk[0] < 0x80 {
			if len(inside) < stored {
				inside = append(inside, sk)
			}
		} else if len(outside) < stored/4 {
			outside = append(outside, sk)
		}
	}
	slices.SortFunc(inside, bytes.Compare)
	slices.SortFunc(outside, bytes.Compare)
	s := mustOpen(b, Options{Dir: b.TempDir(), Logger: quiet, KeyCacheBytes: -1})
	defer s.Close()
	batch := make([]Entry, 0, 1000)
	for _, sk := range inside {
		batch = append(batch, Entry{Key: sk[idLen:], Value: benchValue, Version: Version{1, node(1)}})
		if len(batch) == cap(batch) {
			if _, err := s.Apply(batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	eng := s.eng
	stripes := make([]int, run) // storedMany reads them only for the cache, which is off
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kind := range []string{"absent", "present", "spread", "spread16"} {
		for _, lookup := range []string{"get", "sorted"} {
			b.Run(kind+"/"+lookup, func(b *testing.B) {
				s.eng = eng
				if lookup == "get" {
					s.eng = withoutSortedGet{eng}
				}
				defer func() { s.eng = eng }()
				var found int
				for b.Loop() {
					var keys [][]byte
					switch kind {
					case "absent":
						at := rng.IntN(len(outside) - run)
						keys = outside[at : at+run]
					case "present":
						at := rng.IntN(len(inside) - run)
						keys = inside[at : at+run]
					case "spread":
						keys = make([][]byte, run)
						for j := range keys {
							keys[j] = inside[rng.IntN(len(inside))]
						}
						keys = distinct(keys)
					case "spread16":
						keys = make([][]byte, 16)
						for j := range keys {
							if j%2 == 0 {
								keys[j] = inside[rng.IntN(len(inside))]
							} else {
								keys[j] = outside[rng.IntN(len(outside))]
							}
						}
						keys = distinct(keys)
					}
					olds, err := s.storedMany(nil, stripes[:len(keys)], keys)
					if err != nil {
						b.Fatal(err)
					}
					found = 0
					for _, o := range olds {
						if o.ok {
							found++
						}
					}
				}
				switch {
				case kind == "absent" && found != 0:
					b.Fatalf("found %d keys the store does not hold", found)
				case kind == "present" && found != run:
					b.Fatalf("found %d of %d stored keys", found, run)
				}
			})
		}
	}
}

// distinct sorts keys and drops repeats: an Apply's keys are distinct.
func distinct(keys [][]byte) [][]byte {
	slices.SortFunc(keys, bytes.Compare)
	return slices.CompactFunc(keys, bytes.Equal)
}

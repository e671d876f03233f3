package store

import (
	"fmt"
	"slices"
	"testing"

	"github.com/chordkv/chordkv/internal/ring"
)

// Replicas that agree on older entries must report equal settled digests
// while one of them has applied writes the other has not yet, and unequal
// ones as soon as they disagree on an older entry.
func TestSettledDigestsLeaveOutYoungWrites(t *testing.T) {
	const old, young, horizon = 100 << logicalBits, 900 << logicalBits, 500 << logicalBits
	at := func(hlc uint64, k string, v string) Entry {
		return Entry{Key: []byte(k), Value: []byte(v), Version: Version{HLC: hlc, Node: node(1)}}
	}
	var base []Entry
	for i := range 200 {
		base = append(base, at(old, fmt.Sprintf("k%03d", i), "v"))
	}
	tests := []struct {
		name     string
		onlyA    []Entry // applied to replica A after base
		wantSame bool    // settled digests of A and B agree
	}{
		{"nothing more", nil, true},
		{"young new keys", []Entry{at(young, "new1", "x"), at(young, "new2", "y")}, true},
		{"young overwrites", []Entry{at(young, "k001", "x"), at(young+1, "k001", "z"), at(young, "k150", "y")}, true},
		{"a young delete", []Entry{{Key: []byte("k002"), Version: Version{HLC: young, Node: node(2)}, Tombstone: true}}, true},
		{"an older key B lacks", []Entry{at(old+1, "late", "x")}, false},
		{"an older overwrite B lacks", []Entry{at(old+1, "k003", "x")}, false},
		{"at the horizon counts as older", []Entry{at(horizon, "k004", "x")}, false},
		{"an older difference under a young write", []Entry{at(old+1, "k005", "x"), at(young, "k005", "y")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustOpen(t, Options{InMemory: true, Logger: quiet})
			b := mustOpen(t, Options{InMemory: true, Logger: quiet})
			for _, s := range []*Store{a, b} {
				if _, err := s.Apply(base...); err != nil {
					t.Fatal(err)
				}
			}
			for _, e := range tt.onlyA {
				if _, err := a.Apply(e); err != nil {
					t.Fatal(err)
				}
			}
			var whole ring.ID // (x, x]: the whole ring
			da, err := a.SettledDigests(whole, whole, horizon)
			if err != nil {
				t.Fatal(err)
			}
			db, err := b.SettledDigests(whole, whole, horizon)
			if err != nil {
				t.Fatal(err)
			}
			if same := slices.Equal(da, db); same != tt.wantSame {
				t.Errorf("settled digests equal: %v, want %v", same, tt.wantSame)
			}
			// A horizon above every write is BucketDigests.
			plain, err := a.BucketDigests(whole, whole)
			if err != nil {
				t.Fatal(err)
			}
			top, err := a.SettledDigests(whole, whole, ^uint64(0))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(plain, top) {
				t.Error("SettledDigests above every version differ from BucketDigests")
			}
		})
	}
}

// Forgetting changes only ever makes digests count more writes: a change
// that left the window is counted, as in BucketDigests.
func TestRecentChangesForget(t *testing.T) {
	d := func(r *recentChanges, horizon uint64) uint64 {
		out := []BucketDigest{{Bucket: 7}}
		r.undo(horizon, func(bk int) int {
			if bk == 7 {
				return 0
			}
			return -1
		}, out)
		return out[0].Digest
	}
	tests := []struct {
		name   string
		hlcs   []uint64 // each recorded in bucket 7 with delta 1<<i
		want   uint64   // undone at horizon 0
		length int      // changes remembered
	}{
		{"within the window", []uint64{1, 2, 3}, 0b111, 3},
		{"the oldest fell out of the window", []uint64{1, 2, recentWindow + 2}, 0b110, 2},
		{"out of order: an old change behind a newer one stays", []uint64{3, 1, recentWindow + 3}, 0b111, 3},
		{"out of order: both fell out", []uint64{5, 1, recentWindow + 6}, 0b100, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r recentChanges
			for i, h := range tt.hlcs {
				r.record(7, h, 1<<i)
			}
			if got := d(&r, 0); got != tt.want {
				t.Errorf("undone %b, want %b", got, tt.want)
			}
			if got := len(r.log) - r.head; got != tt.length {
				t.Errorf("%d changes remembered, want %d", got, tt.length)
			}
		})
	}
	t.Run("an idle log empties and gives its memory back", func(t *testing.T) {
		var r recentChanges
		for i := range 1000 {
			r.record(i%NumBuckets, 1, 1)
		}
		r.forget(recentWindow) // nothing is older than the window yet
		if got := len(r.log) - r.head; got != 1000 {
			t.Fatalf("%d changes remembered, want 1000", got)
		}
		r.forget(recentWindow + 2)
		if r.log != nil || r.head != 0 {
			t.Errorf("log of %d (head %d) kept after every change left the window", len(r.log), r.head)
		}
	})
	t.Run("at most maxRecentChanges", func(t *testing.T) {
		var r recentChanges
		for i := range maxRecentChanges + 10 {
			r.record(i%NumBuckets, 1, 1)
		}
		if got := len(r.log) - r.head; got != maxRecentChanges {
			t.Errorf("%d changes remembered, want %d", got, maxRecentChanges)
		}
	})
}

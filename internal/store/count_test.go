package store

import (
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/ring"
)

// CountKeys agrees with a scan over every kind of interval (wrapping, whole
// ring, bucket-aligned, inside one bucket), counts values but not
// tombstones, and follows overwrites, deletes and removals.
func TestCountKeysMatchesScan(t *testing.T) {
	forEngines(t, func(t *testing.T, s *Store) {
		for i, k := range ringKeys {
			mustApply(t, s, put(string(k), uint64(i+1), 1, "v"))
			if i%7 == 0 {
				mustApply(t, s, del(string(k), uint64(i+2), 1)) // a tombstone now
			}
			if i%11 == 0 {
				mustApply(t, s, put(string(k), uint64(i+3), 1, "again")) // overwritten
			}
		}
		check := func(when string) {
			t.Helper()
			for _, iv := range intervals() {
				var want int64
				if err := s.Scan(iv.a, iv.b, func(e Entry) bool {
					if !e.Tombstone {
						want++
					}
					return true
				}); err != nil {
					t.Fatal(err)
				}
				got, err := s.CountKeys(iv.a, iv.b)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("%s: %s: CountKeys = %d, a scan counts %d", when, iv.name, got, want)
				}
			}
		}
		check("after writes")
		if _, err := s.Purge(pos(ringKeys[100]), pos(ringKeys[200])); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CollectTombstones(time.Now()); err != nil {
			t.Fatal(err)
		}
		check("after purge and collection")
		if all, _ := s.CountKeys(ring.ID{}, ring.ID{}); all != s.Stats().Keys {
			t.Errorf("whole ring: CountKeys = %d, Stats.Keys = %d", all, s.Stats().Keys)
		}
	})
}

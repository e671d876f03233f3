package store

import (
	"bytes"
	"fmt"
	"testing"
)

func cacheEntry(key string, hlc uint64, value string) Entry {
	return Entry{Key: []byte(key), Value: []byte(value), Version: Version{HLC: hlc}}
}

func metaFor(e Entry) recMeta { return metaOf(storageKey(e.Key), &e) }

// store as a writer does: look the key up (under the write lock), then store.
func writeCached(kc *keyCache, e Entry, budget int) {
	c, _ := kc.lookup(e.Key)
	kc.store(c, e.Key, &e, metaFor(e), budget, true)
}

// writeUncached is writeCached for ApplyUncached's writes.
func writeUncached(kc *keyCache, e Entry, budget int) {
	c, _ := kc.lookup(e.Key)
	kc.store(c, e.Key, &e, metaFor(e), budget, false)
}

// The cache's promises: Get never sees an entry older than the last write
// or removal of the key, whatever fills raced with them, and a writer's
// lookup finds the version it last stored.
func TestKeyCacheNeverGoesBack(t *testing.T) {
	const budget, tomb = 64 << 10, "<tombstone>"
	tests := []struct {
		name    string
		steps   func(kc *keyCache) // ends with the key's latest write, or its removal
		want    string             // value get must return, "" for a miss, tomb for a tombstone
		wantVer uint64             // version lookup must return, 0 for none
	}{
		{"fill after a miss is kept", func(kc *keyCache) {
			_, _, gen := kc.get([]byte("k"))
			e := cacheEntry("k", 2, "v2")
			kc.fill(e.Key, &e, metaFor(e), gen, budget)
		}, "v2", 2},
		{"a write between the read and the fill wins", func(kc *keyCache) {
			_, _, gen := kc.get([]byte("k"))                  // a Get misses and reads v1 from the engine...
			writeCached(kc, cacheEntry("k", 2, "v2"), budget) // ...a write stores v2...
			stale := cacheEntry("k", 1, "v1")
			kc.fill(stale.Key, &stale, metaFor(stale), gen, budget) // ...the stale fill is dropped
		}, "v2", 2},
		{"a removal between the read and the fill wins", func(kc *keyCache) {
			_, _, gen := kc.get([]byte("k"))
			kc.forget([]byte("k"))
			stale := cacheEntry("k", 1, "v1")
			kc.fill(stale.Key, &stale, metaFor(stale), gen, budget)
		}, "", 0},
		{"a writer whose record was evicted stores anew", func(kc *keyCache) {
			writeCached(kc, cacheEntry("k", 1, "v1"), budget)
			c, _ := kc.lookup([]byte("k"))
			kc.forget([]byte("k"))
			e := cacheEntry("k", 2, "v2")
			kc.store(c, e.Key, &e, metaFor(e), budget, true)
		}, "v2", 2},
		{"a writer finds a record a fill made after its lookup", func(kc *keyCache) {
			c, _ := kc.lookup([]byte("k")) // nil: not cached
			_, _, gen := kc.get([]byte("k"))
			old := cacheEntry("k", 1, "v1")
			kc.fill(old.Key, &old, metaFor(old), gen, budget)
			e := cacheEntry("k", 2, "v2")
			kc.store(c, e.Key, &e, metaFor(e), budget, true)
		}, "v2", 2},
		{"a write replaces", func(kc *keyCache) {
			writeCached(kc, cacheEntry("k", 1, "v1"), budget)
			writeCached(kc, cacheEntry("k", 2, "v2"), budget)
		}, "v2", 2},
		{"a tombstone is served", func(kc *keyCache) {
			writeCached(kc, cacheEntry("k", 1, "v1"), budget)
			writeCached(kc, Entry{Key: []byte("k"), Version: Version{HLC: 2}, Tombstone: true}, budget)
		}, tomb, 2},
		{"an uncached write caches no new key", func(kc *keyCache) {
			writeUncached(kc, cacheEntry("k", 1, "v1"), budget)
		}, "", 0},
		{"an uncached write updates a cached key", func(kc *keyCache) {
			writeCached(kc, cacheEntry("k", 1, "v1"), budget)
			writeUncached(kc, cacheEntry("k", 2, "v2"), budget)
		}, "v2", 2},
		{"an uncached write between the read and the fill wins", func(kc *keyCache) {
			_, _, gen := kc.get([]byte("k"))
			writeUncached(kc, cacheEntry("k", 2, "v2"), budget)
			stale := cacheEntry("k", 1, "v1")
			kc.fill(stale.Key, &stale, metaFor(stale), gen, budget)
		}, "", 0},
		{"an uncached writer updates a record a fill made after its lookup", func(kc *keyCache) {
			c, _ := kc.lookup([]byte("k")) // nil: not cached
			_, _, gen := kc.get([]byte("k"))
			old := cacheEntry("k", 1, "v1")
			kc.fill(old.Key, &old, metaFor(old), gen, budget)
			e := cacheEntry("k", 2, "v2")
			kc.store(c, e.Key, &e, metaFor(e), budget, false)
		}, "v2", 2},
		{"forget forgets", func(kc *keyCache) {
			writeCached(kc, cacheEntry("k", 1, "v1"), budget)
			kc.forget([]byte("k"))
		}, "", 0},
		{"a value too large keeps only its version", func(kc *keyCache) {
			writeCached(kc, cacheEntry("k", 1, "v1"), budget)
			writeCached(kc, Entry{Key: []byte("k"), Value: make([]byte, budget), Version: Version{HLC: 2}}, budget)
		}, "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kc keyCache
			tt.steps(&kc)
			e, ok, _ := kc.get([]byte("k"))
			got := map[bool]string{true: string(e.Value)}[ok]
			if ok && e.Tombstone {
				got = tomb
			}
			if got != tt.want {
				t.Errorf("get = %q (hit %v), want %q", got, ok, tt.want)
			}
			c, m := kc.lookup([]byte("k"))
			if gotVer := map[bool]uint64{true: m.ver.HLC}[c != nil]; gotVer != tt.wantVer {
				t.Errorf("lookup = version %d (found %v), want %d", gotVer, c != nil, tt.wantVer)
			}
			if ok && (e.Version != m.ver || e.Tombstone != m.tomb) {
				t.Errorf("get's entry %+v disagrees with lookup's metadata %+v", e, m)
			}
		})
	}
}

// The cache keeps copies within its budget, evicting as it fills, and
// never changes a value a caller holds.
func TestKeyCacheBudgetAndCopies(t *testing.T) {
	const budget = 2048
	var kc keyCache
	value := []byte("original")
	writeCached(&kc, Entry{Key: []byte("k"), Value: value, Version: Version{HLC: 1}}, budget)
	value[0] = 'X'
	held, ok, _ := kc.get([]byte("k"))
	if !ok || !bytes.Equal(held.Value, []byte("original")) {
		t.Fatalf("cached %q, %v: want a copy of the value as written", held.Value, ok)
	}
	writeCached(&kc, cacheEntry("k", 2, "replaced"), budget)
	if string(held.Value) != "original" {
		t.Errorf("a held value changed to %q when the key was rewritten", held.Value)
	}
	for i := range 1000 {
		writeCached(&kc, cacheEntry(fmt.Sprintf("key-%d", i), 1, "0123456789"), budget)
	}
	if kc.bytes > budget {
		t.Errorf("cache holds %d bytes, budget %d", kc.bytes, budget)
	}
	sum := 0
	for k, c := range kc.keys {
		if string(c.entry.Key) != k || c.gone {
			t.Errorf("key %q: record for %q, gone %v", k, c.entry.Key, c.gone)
		}
		sum += keyCost(c.entry.Key, len(c.entry.Value))
	}
	if sum != kc.bytes {
		t.Errorf("cache accounts %d bytes, holds %d", kc.bytes, sum)
	}
	if n := len(kc.keys); n == 0 || n >= 1000 {
		t.Errorf("%d keys cached of 1,000 written into a small budget", n)
	}
	if c, _ := kc.lookup([]byte("key-999")); c == nil {
		t.Error("the key just written was evicted to make room for itself")
	}
}

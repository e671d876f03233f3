package store

import (
	"bytes"
	"fmt"
	"testing"
)

func cacheEntry(key string, hlc uint64, value string) Entry {
	return Entry{Key: []byte(key), Value: []byte(value), Version: Version{HLC: hlc}}
}

// The cache's one promise: it never returns an entry older than the last
// put or drop of the key, whatever fills raced with them.
func TestReadCacheNeverGoesBack(t *testing.T) {
	tests := []struct {
		name  string
		steps func(c *readCache) // ends with the key's latest write being v2, or dropped
		want  string             // value get must return, "" for a miss
	}{
		{"fill after a miss is kept", func(c *readCache) {
			_, _, gen := c.get([]byte("k"))
			c.fill([]byte("k"), cacheEntry("k", 2, "v2"), gen)
		}, "v2"},
		{"a put between the read and the fill wins", func(c *readCache) {
			_, _, gen := c.get([]byte("k"))                    // a Get misses and reads v1 from the engine...
			c.put([]byte("k"), cacheEntry("k", 2, "v2"))       // ...a write stores v2...
			c.fill([]byte("k"), cacheEntry("k", 1, "v1"), gen) // ...the stale fill is dropped
		}, "v2"},
		{"a drop between the read and the fill wins", func(c *readCache) {
			_, _, gen := c.get([]byte("k"))
			c.drop([]byte("k"))
			c.fill([]byte("k"), cacheEntry("k", 1, "v1"), gen)
		}, ""},
		{"a range drop between the read and the fill wins", func(c *readCache) {
			_, _, gen := c.get([]byte("k"))
			c.dropAll()
			c.fill([]byte("k"), cacheEntry("k", 1, "v1"), gen)
		}, ""},
		{"put replaces", func(c *readCache) {
			c.put([]byte("k"), cacheEntry("k", 1, "v1"))
			c.put([]byte("k"), cacheEntry("k", 2, "v2"))
		}, "v2"},
		{"drop forgets", func(c *readCache) {
			c.put([]byte("k"), cacheEntry("k", 1, "v1"))
			c.drop([]byte("k"))
		}, ""},
		{"too large for the budget is not cached", func(c *readCache) {
			c.put([]byte("k"), cacheEntry("k", 1, "v1"))
			c.put([]byte("k"), Entry{Key: []byte("k"), Value: make([]byte, 1<<20), Version: Version{HLC: 2}})
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newReadCache(64 << 10)
			tt.steps(c)
			e, ok, _ := c.get([]byte("k"))
			if got := map[bool]string{true: string(e.Value)}[ok]; got != tt.want {
				t.Errorf("get = %q (hit %v), want %q", got, ok, tt.want)
			}
		})
	}
}

// The cache keeps copies within its budget, evicting as it fills.
func TestReadCacheBudgetAndCopies(t *testing.T) {
	c := newReadCache(readCacheShards * 1024) // 1 KiB per shard
	value := []byte("original")
	c.put([]byte("k"), Entry{Key: []byte("k"), Value: value})
	value[0] = 'X'
	if e, ok, _ := c.get([]byte("k")); !ok || !bytes.Equal(e.Value, []byte("original")) {
		t.Fatalf("cached %q, %v: want a copy of the value as put", e.Value, ok)
	}
	for i := range 10_000 {
		c.put(fmt.Appendf(nil, "key-%d", i), cacheEntry("", 1, "0123456789"))
	}
	total := 0
	for i := range c.shards {
		sh := &c.shards[i]
		if sh.bytes > c.maxShardBytes {
			t.Errorf("shard %d holds %d bytes, budget %d", i, sh.bytes, c.maxShardBytes)
		}
		sum := 0
		for k, e := range sh.m {
			sum += entryCost([]byte(k), e)
		}
		if sum != sh.bytes {
			t.Errorf("shard %d accounts %d bytes, holds %d", i, sh.bytes, sum)
		}
		total += len(sh.m)
	}
	if total == 0 || total >= 10_000 {
		t.Errorf("%d entries cached of 10,000 put into a small budget", total)
	}
	if newReadCache(0) != nil {
		t.Error("a zero budget should mean no cache")
	}
}

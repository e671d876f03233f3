package store

import (
	"hash/maphash"
	"sync"
)

// readCache keeps recently read and written entries in memory, so that Get,
// on the path of every read (the coordinator's own copy and each replica's),
// skips the engine: a memtable lookup was about a fifth of a loaded node's
// CPU under a get load. It holds copies, bounded in bytes.
//
// Get does not take the write stripes (a write holds them through its
// fsync), so the cache must never keep a value older than the engine's. A
// generation per shard ensures it: every change to a shard's keys (a write,
// a removal) bumps the generation, and a fill from the engine (read before
// the fill) is only kept if the generation has not moved since the read
// began; otherwise the fill is dropped and the next Get reads the engine.
type readCache struct {
	shards        [readCacheShards]readShard
	maxShardBytes int
	seed          maphash.Seed
}

// readCacheShards spreads the cache's locks; Gets of different keys rarely
// wait on each other.
const readCacheShards = 64

// readCacheOverhead approximates an entry's bytes beyond its key and value
// (map slot, Entry header, string header).
const readCacheOverhead = 96

type readShard struct {
	mu    sync.Mutex
	gen   uint64
	bytes int
	m     map[string]Entry
}

// newReadCache returns a cache of about maxBytes, or nil (no cache) for
// maxBytes <= 0.
func newReadCache(maxBytes int64) *readCache {
	if maxBytes <= 0 {
		return nil
	}
	return &readCache{maxShardBytes: int(max(maxBytes/readCacheShards, 1)), seed: maphash.MakeSeed()}
}

func (c *readCache) shard(key []byte) *readShard {
	return &c.shards[maphash.Bytes(c.seed, key)%readCacheShards]
}

// get returns key's cached entry; on a miss, the shard's generation, to
// pass to fill with what the engine holds.
func (c *readCache) get(key []byte) (e Entry, ok bool, gen uint64) {
	sh := c.shard(key)
	sh.mu.Lock()
	e, ok = sh.m[string(key)]
	gen = sh.gen
	sh.mu.Unlock()
	return e, ok, gen
}

// fill caches what the engine held for key, read after get returned gen,
// unless the shard changed in between.
func (c *readCache) fill(key []byte, e Entry, gen uint64) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen {
		return
	}
	c.setLocked(sh, key, e)
}

// put caches e as key's entry after the engine stored it.
func (c *readCache) put(key []byte, e Entry) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	c.setLocked(sh, key, e)
}

// drop forgets key, after a write whose outcome is unknown or a removal.
func (c *readCache) drop(key []byte) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	c.deleteLocked(sh, string(key))
}

// dropAll forgets everything, after a removal that names no keys (a range).
func (c *readCache) dropAll() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen++
		sh.m, sh.bytes = nil, 0
		sh.mu.Unlock()
	}
}

func entryCost(key []byte, e Entry) int { return len(key) + len(e.Value) + readCacheOverhead }

// setLocked stores a copy of e, evicting arbitrary entries (Go randomises
// map iteration) while the shard is over its budget. An entry larger than
// the whole budget is not cached.
func (c *readCache) setLocked(sh *readShard, key []byte, e Entry) {
	cost := entryCost(key, e)
	if cost > c.maxShardBytes {
		c.deleteLocked(sh, string(key))
		return
	}
	if sh.m == nil {
		sh.m = map[string]Entry{}
	}
	c.deleteLocked(sh, string(key))
	for k := range sh.m {
		if sh.bytes+cost <= c.maxShardBytes {
			break
		}
		c.deleteLocked(sh, k)
	}
	k := string(key)
	e.Key = []byte(k)
	e.Value = append([]byte(nil), e.Value...)
	sh.m[k] = e
	sh.bytes += cost
}

func (c *readCache) deleteLocked(sh *readShard, key string) {
	if old, ok := sh.m[key]; ok {
		sh.bytes -= entryCost(old.Key, old)
		delete(sh.m, key)
	}
}

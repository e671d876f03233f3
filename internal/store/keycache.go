package store

import (
	"slices"
	"sync"
)

// keyCache is one stripe's memory of its keys' stored records: the metadata
// Apply resolves a write against (version, digest hash, size) and, within
// the byte budget, the whole entry, which Get serves without the engine.
//
// One map serves both purposes, so a write to a cached key costs one lookup
// and an update in place. Two caches (a version map per stripe and a
// sharded read cache) cost, under a replicated batched put load, four map
// operations, two key copies and a map iteration per write: about a fifth
// of a node's CPU in the profile, most of it waiting on memory.
//
// Consistency. A writer holds its stripe's write lock (stripe.Mutex) from
// its lookup to its update, around the engine write, and no other writer
// of the stripe's keys runs meanwhile, so the metadata a writer finds is
// what the engine holds. Get takes only mu, never the write lock, so a read
// does not wait for a write's engine batch; after a miss it fills the cache
// with what it read from the engine only if the stripe's generation has not
// moved since the miss, so a fill never replaces a newer write.
type keyCache struct {
	mu    sync.Mutex // guards the fields below and every cachedKey in keys
	gen   uint64     // bumped by every write and removal of the stripe's keys
	bytes int        // keyCost of the cached keys
	keys  map[string]*cachedKey
}

// cachedKey is one key's stored record. Writers update it in place, so a
// writer that looked it up before its engine write finds it again without
// a second lookup, unless it was evicted meanwhile (gone).
type cachedKey struct {
	meta     recMeta
	entry    Entry // the stored entry; its Value only when hasValue
	hasValue bool  // entry holds the value (it fitted the budget)
	gone     bool  // no longer in keys: look the key up again
}

// keyCacheOverhead approximates a cached key's bytes beyond its key and
// value: the map slot, the cachedKey and the key's two copies' headers.
const keyCacheOverhead = 192

func keyCost(key []byte, value int) int { return len(key) + value + keyCacheOverhead }

// maxCachedValue is the largest value cached, as a share of a stripe's
// budget: one large value must not evict hundreds of small ones. Larger
// values keep only their metadata.
func maxCachedValue(budget int) int { return budget / 4 }

// lookup returns key's cached record and a copy of its metadata, for a
// writer holding the stripe's write lock; nil if the key is not cached.
func (kc *keyCache) lookup(key []byte) (*cachedKey, recMeta) {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	c := kc.keys[string(key)]
	if c == nil {
		return nil, recMeta{}
	}
	return c, c.meta
}

// get returns key's cached entry for Get; on a miss, the generation to pass
// to fill with what the engine holds. The entry shares memory with the
// cache, which never modifies it: a write stores a new value slice.
func (kc *keyCache) get(key []byte) (e Entry, ok bool, gen uint64) {
	kc.mu.Lock()
	if c := kc.keys[string(key)]; c != nil && c.hasValue {
		e, ok = c.entry, true
	}
	gen = kc.gen
	kc.mu.Unlock()
	return e, ok, gen
}

// fill caches what the engine held for key (e, with metadata m), read
// after get returned gen, unless the stripe changed in between.
func (kc *keyCache) fill(key []byte, e *Entry, m recMeta, gen uint64, budget int) {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if kc.gen != gen {
		return
	}
	kc.setLocked(kc.keys[string(key)], key, e, m, budget)
}

// store records e (metadata m) as key's stored record after the engine
// wrote it. c is what the writer's lookup returned (nil for none); the
// writer holds the stripe's write lock. With cacheNew false a key not
// cached stays out (ApplyUncached); the generation still moves, so that
// a Get's fill of what it read before this write cannot cache it.
func (kc *keyCache) store(c *cachedKey, key []byte, e *Entry, m recMeta, budget int, cacheNew bool) {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	kc.gen++
	if c == nil || c.gone {
		c = kc.keys[string(key)] // a fill may have cached it since
	}
	if c == nil && !cacheNew {
		return
	}
	kc.setLocked(c, key, e, m, budget)
}

// setLocked makes key's cached record (c, or a new one when c is nil) a
// copy of e, then evicts arbitrary other keys (Go randomises map
// iteration) while the stripe is over its budget.
func (kc *keyCache) setLocked(c *cachedKey, key []byte, e *Entry, m recMeta, budget int) {
	value := len(e.Value)
	hasValue := keyCost(key, value) <= maxCachedValue(budget)
	if !hasValue {
		value = 0
	}
	if c == nil {
		if kc.keys == nil {
			kc.keys = map[string]*cachedKey{}
		}
		c = &cachedKey{entry: Entry{Key: slices.Clone(key)}}
		kc.keys[string(key)] = c
	} else {
		kc.bytes -= keyCost(c.entry.Key, len(c.entry.Value))
	}
	kc.bytes += keyCost(key, value)
	c.meta, c.hasValue = m, hasValue
	c.entry.Version, c.entry.Tombstone, c.entry.Value = e.Version, e.Tombstone, nil
	if hasValue && !e.Tombstone {
		// A new slice, never an update of the old one: Get's callers
		// may still hold that.
		c.entry.Value = append(make([]byte, 0, len(e.Value)), e.Value...)
	}
	if kc.bytes <= budget {
		return
	}
	for k, other := range kc.keys {
		if other != c {
			kc.deleteLocked(k, other)
		}
		if kc.bytes <= budget {
			return
		}
	}
}

// forget drops key, after a write whose outcome is unknown or a removal.
func (kc *keyCache) forget(key []byte) {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	kc.gen++
	if c := kc.keys[string(key)]; c != nil {
		kc.deleteLocked(string(key), c)
	}
}

func (kc *keyCache) deleteLocked(key string, c *cachedKey) {
	kc.bytes -= keyCost(c.entry.Key, len(c.entry.Value))
	c.gone = true
	delete(kc.keys, key)
}

package store

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/chordkv/chordkv/internal/ring"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults keep a node at rest small (the daemon's budget is 40 MiB RSS):
// Pebble holds at most CacheBytes of blocks and two memtables, and both
// caches fill only as keys are read and written, so a node that has served
// nothing holds neither.
const (
	// DefaultCacheBytes holds the index and data blocks that a node's
	// reads, and the version lookup before every write, touch. At 8 MiB, a
	// 3-node ring writing random keys of 1,000,000 with 100-byte values
	// spent half its CPU re-reading evicted blocks (8,100-8,300 batched
	// puts/s); at 32 or 64 MiB it wrote 13,100-14,700/s. 64 leaves room for
	// a larger data set. The key cache spares these reads only for a hot
	// working set.
	DefaultCacheBytes    = 64 << 20
	DefaultMemTableBytes = 4 << 20
	// DefaultKeyCacheBytes holds a working set of about 70,000 keys of
	// 100-byte values; an idle node's cache is empty.
	DefaultKeyCacheBytes = 20 << 20
)

// DefaultWALMinSyncInterval is the daemon's --wal-min-sync-interval. On the
// 2-core VMs of docs/benchmarks.md, a 3-node ring under 16 or 64 writers
// did 6-13% more quorum puts with it than with syncs as soon as asked, 4
// writers as many, and a lone writer 1-7% fewer (its next write may wait
// for the interval); 500µs cost 1 to 4 writers up to 10%.
const DefaultWALMinSyncInterval = 250 * time.Microsecond

// Options configures Open.
type Options struct {
	// Dir is the data directory of the Pebble engine, created if missing.
	Dir string
	// InMemory selects the in-memory engine (tests, simulations); Dir is
	// then ignored and nothing survives Close.
	InMemory bool
	// CacheBytes is Pebble's block cache: more keeps more of a large data
	// set's blocks in memory, where writes look up the stored version and
	// reads find their value, at that much memory once they are touched.
	// 0 means DefaultCacheBytes.
	CacheBytes int64
	// MemTableBytes is Pebble's memtable size; 0 means DefaultMemTableBytes.
	MemTableBytes uint64
	// WALMinSyncInterval is the shortest time between two fsyncs of the
	// write-ahead log (Pebble's option of that name, CockroachDB's
	// rocksdb.min_wal_sync_interval). A write is acknowledged only once
	// its own sync is done either way, so durability is unchanged; what
	// it trades is latency for syncs. Longer makes each sync that follows
	// another within the interval wait for the rest of it, so that the
	// writes arriving meanwhile share it: fewer fsyncs under load, which
	// on a virtual machine's disk cost far more CPU than their system
	// call shows, at up to that much more latency per write for a writer
	// that writes again sooner than the interval. 0 syncs as soon as a
	// sync is asked for and the previous one is done (Pebble's default).
	WALMinSyncInterval time.Duration
	// KeyCacheBytes bounds the memory of the per-key cache (see keyCache):
	// recently read and written keys' versions, which spare Apply the
	// engine read that last-writer-wins needs (a quarter of a node's CPU
	// under a put load), and their values, which Get serves without a
	// memtable or block lookup (a fifth of a node's CPU under a get load).
	// A key costs about 200 bytes plus its key and value; values over a
	// quarter of a stripe's share (1/256 of the budget) keep only their
	// version. More bytes keep a larger working set hot, at that much
	// memory under load. 0 means DefaultKeyCacheBytes; a negative value
	// turns the cache off (every Apply and Get reads the engine).
	KeyCacheBytes int64
	// Logger receives the store's and Pebble's messages; nil means
	// slog.Default().
	Logger *slog.Logger
	// Engine, when set, is used instead of opening one from the fields
	// above (for fault injection). The Store closes it on Close.
	Engine Engine

	fs vfs.FS // tests: Pebble over a crashable in-memory file system
}

// Stats counts what the store holds. It is maintained on every write, not
// computed by scanning, so reading it is cheap.
type Stats struct {
	Keys       int64 // entries whose latest write is a value
	Tombstones int64 // entries whose latest write is a delete
	Bytes      int64 // key and value bytes of all entries, tombstones included
}

// Store is a node's local key-value data: one latest Entry per key, merged by
// last-writer-wins on Version. It is safe for concurrent use.
type Store struct {
	eng Engine
	log *slog.Logger

	// Apply's read-modify-write of a key happens under the key's stripe,
	// chosen by hashing the key with seed.
	stripes [numStripes]stripe
	seed    maphash.Seed
	// perStripe is each stripe's key cache budget in bytes; 0: no cache.
	perStripe int

	acctMu  sync.Mutex // guards digest, recent, live and stats
	digest  [NumBuckets]uint64
	recent  recentChanges     // the latest writes' digest changes, for SettledDigests
	live    [NumBuckets]int64 // per bucket, entries whose latest write is a value; see CountKeys
	stats   Stats
	corrupt int // records skipped by the rebuild on Open
}

// stripe is one of the locks serialising writes to a key, with the cache
// of the stripe's keys (see keyCache).
type stripe struct {
	sync.Mutex
	cache keyCache
}

// numStripes spreads keys over enough locks that unrelated writes almost
// never wait on each other, so their syncs can be grouped by the engine.
const numStripes = 256

// Open opens (or creates) the store described by o and rebuilds its digests
// and stats with one scan of the data.
func Open(o Options) (*Store, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "store")
	eng := o.Engine
	where := "engine"
	switch {
	case eng != nil:
	case o.InMemory:
		eng, where = newMemEngine(), "memory"
	case o.Dir == "":
		return nil, errors.New("store: open: no Dir and not InMemory")
	case o.WALMinSyncInterval < 0:
		return nil, fmt.Errorf("store: open: WALMinSyncInterval %s is negative", o.WALMinSyncInterval)
	default:
		where = o.Dir
		cfg := pebbleConfig{
			dir:           o.Dir,
			cacheBytes:    o.CacheBytes,
			memTableBytes: o.MemTableBytes,
			walMinSync:    o.WALMinSyncInterval,
			logger:        log,
			fs:            o.fs,
		}
		if cfg.cacheBytes <= 0 {
			cfg.cacheBytes = DefaultCacheBytes
		}
		if cfg.memTableBytes == 0 {
			cfg.memTableBytes = DefaultMemTableBytes
		}
		pe, err := openPebble(cfg)
		if err != nil {
			return nil, fmt.Errorf("store: open %s: %w", o.Dir, err)
		}
		eng = pe
	}
	s := &Store{eng: eng, log: log, seed: maphash.MakeSeed()}
	switch n := o.KeyCacheBytes; {
	case n == 0:
		s.perStripe = DefaultKeyCacheBytes / numStripes
	case n > 0:
		s.perStripe = int(max(n/numStripes, 1))
	}
	start := time.Now()
	if err := s.rebuild(); err != nil {
		_ = eng.Close()
		return nil, fmt.Errorf("store: open %s: rebuild digests: %w", where, err)
	}
	st := s.Stats()
	log.Info("store opened", "where", where, "keys", st.Keys, "tombstones", st.Tombstones,
		"bytes", st.Bytes, "corrupt", s.corrupt, "rebuild", time.Since(start))
	return s, nil
}

// rebuild recomputes digests and stats from the engine's contents.
func (s *Store) rebuild() error {
	return s.eng.Iterate(nil, nil, func(sk, v []byte) bool {
		e, pos, err := decodeRecord(sk, v)
		if err != nil {
			s.corrupt++
			s.log.Warn("skipping unreadable record", "storage_key", hex.EncodeToString(sk), "err", err)
			return true
		}
		m := metaOf(sk, &e)
		s.account(BucketOf(pos), nil, &m)
		return true
	})
}

// Close closes the engine. The Store must not be used afterwards; calls
// return errors wrapping ErrClosed.
func (s *Store) Close() error {
	if err := s.eng.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Get returns key's entry, tombstone or not: a tombstone tells the caller
// the key was deleted at that version, which a read quorum needs to know.
// ok is false when the store has never seen the key (or has collected its
// tombstone). A record that cannot be decoded yields an error wrapping
// ErrCorrupt; an Apply to the key repairs it. The entry may share memory
// with the store's key cache: callers must not modify its Key or Value.
func (s *Store) Get(key []byte) (e Entry, ok bool, err error) {
	if len(key) == 0 {
		return e, false, errors.New("store: get: empty key")
	}
	cache := &s.stripes[s.stripeOf(key)].cache
	var gen uint64
	if s.perStripe > 0 {
		var hit bool
		if e, hit, gen = cache.get(key); hit {
			return e, true, nil
		}
	}
	sk := storageKey(key)
	v, ok, err := s.eng.Get(sk)
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("store: get %q: %w", key, err)
		}
		return e, false, err
	}
	if err := decodeValue(v, &e); err != nil {
		return Entry{}, false, fmt.Errorf("store: get %q: %w", key, err)
	}
	e.Key = slices.Clone(key)
	if s.perStripe > 0 {
		cache.fill(key, &e, metaOf(sk, &e), gen, s.perStripe)
	}
	return e, true, nil
}

// Apply merges entries by last-writer-wins: each is written only if its
// Version is newer than the stored one (an equal Version is the same write,
// a no-op). All winners go to the engine in one atomic, synced batch;
// concurrent Apply calls share fsyncs through the engine's group commit.
// applied[i] reports whether entries[i] was written. When one call carries
// several entries for the same key, only the newest can be applied.
//
// This is the only write path: client writes, replication, read repair and
// hand-off all use it (directly or through ApplyAsync), so they all resolve
// conflicts the same way.
func (s *Store) Apply(entries ...Entry) (applied []bool, err error) {
	applied, wait, err := s.ApplyAsync(entries...)
	if err != nil {
		return applied, err
	}
	if err := wait(); err != nil {
		clear(applied)
		return applied, err
	}
	return applied, nil
}

// noWait is the wait of a write that is durable already, or wrote nothing.
func noWait() error { return nil }

// ApplyAsync is Apply for a caller with other work to do while the write's
// fsync runs (a coordinator waiting for its replicas): when it returns, the
// winners are written and visible, and they are durable once wait returns
// nil. When err is nil, wait must be called exactly once, on every path,
// and before the write is acknowledged to anyone: until it is, the store
// cannot close. If it fails, the write may be lost in a crash, as when
// Apply fails.
func (s *Store) ApplyAsync(entries ...Entry) (applied []bool, wait func() error, err error) {
	return s.applyAsync(entries, true)
}

// ApplyUncached is ApplyAsync for entries moving between replicas (a
// take-over, a hand-off, anti-entropy, read repair) rather than written by
// a client: it keeps the keys the cache holds current but caches no other.
// A range passing through is mostly keys no client asked this node for;
// caching them would evict the keys clients use and, with a new key
// costing an eviction, was a fifth of a joiner's CPU during its take-over.
func (s *Store) ApplyUncached(entries ...Entry) (applied []bool, wait func() error, err error) {
	return s.applyAsync(entries, false)
}

// applyAsync is ApplyAsync; with cacheNew false it is ApplyUncached's.
func (s *Store) applyAsync(entries []Entry, cacheNew bool) (applied []bool, wait func() error, err error) {
	applied = make([]bool, len(entries))
	wait = noWait
	if len(entries) == 0 {
		return applied, wait, nil
	}
	type pending struct {
		idx int
		sk  []byte
		pos ring.ID
	}
	// Keep the newest entry per key (first of equals); the others lose.
	cands := make([]pending, 0, len(entries))
	var byKey map[string]int // key -> index in cands; a single entry needs none
	if len(entries) > 1 {
		byKey = make(map[string]int, len(entries))
	}
	for i := range entries {
		e := &entries[i]
		if len(e.Key) == 0 {
			return applied, wait, fmt.Errorf("store: apply: entry %d: empty key", i)
		}
		if e.Tombstone && len(e.Value) > 0 {
			return applied, wait, fmt.Errorf("store: apply %q: tombstone carries a value", e.Key)
		}
		if j, dup := byKey[string(e.Key)]; dup {
			if e.Version.After(entries[cands[j].idx].Version) {
				cands[j].idx = i
			}
			continue
		}
		sk := storageKey(e.Key)
		if byKey != nil {
			byKey[string(e.Key)] = len(cands)
		}
		cands = append(cands, pending{idx: i, sk: sk, pos: ring.ID(sk[:idLen])})
	}

	// The common single-key Apply keeps its lock lists on the stack.
	var lockBuf, heldBuf [4]int
	locks := lockBuf[:0] // locks[i] is cands[i]'s stripe
	for _, c := range cands {
		locks = append(locks, s.stripeOf(entries[c.idx].Key))
	}
	held := s.lockStripes(append(heldBuf[:0], locks...))
	locked := true
	defer func() {
		if locked {
			s.unlockStripes(held)
		}
	}()

	type change struct {
		idx    int
		key    []byte
		stripe int
		bucket int
		cached *cachedKey // the key's cache record, if it had one
		old    recMeta
		hasOld bool
		new    recMeta
	}
	var sksBuf [4][]byte
	sks := sksBuf[:0]
	for _, c := range cands {
		sks = append(sks, c.sk)
	}
	var oldBuf [4]storedRecord
	olds, err := s.storedMany(oldBuf[:0], locks, sks)
	if err != nil {
		return applied, wait, fmt.Errorf("store: apply %d entries: %w", len(cands), err)
	}
	ops := make([]Op, 0, len(cands))
	changes := make([]change, 0, len(cands))
	for i, c := range cands {
		e := &entries[c.idx]
		old := &olds[i]
		if old.ok && !e.Version.After(old.meta.ver) {
			continue
		}
		ops = append(ops, Op{Key: c.sk, Value: encodeValue(e)})
		changes = append(changes, change{idx: c.idx, key: e.Key, stripe: locks[i], bucket: BucketOf(c.pos), cached: old.cached, old: old.meta, hasOld: old.ok, new: metaOf(c.sk, e)})
	}
	if len(ops) == 0 {
		return applied, wait, nil
	}
	engineWait, err := s.writeSynced(ops)
	if err != nil {
		// The batch may or may not have reached the engine: let the next
		// write of these keys read what it holds.
		for _, ch := range changes {
			s.uncache(ch.key)
		}
		return applied, wait, fmt.Errorf("store: apply %d entries: %w", len(ops), err)
	}
	if s.perStripe > 0 {
		for _, ch := range changes {
			s.stripes[ch.stripe].cache.store(ch.cached, ch.key, &entries[ch.idx], ch.new, s.perStripe, cacheNew)
		}
	}
	s.acctMu.Lock()
	for i := range changes {
		ch := &changes[i]
		var old *recMeta
		if ch.hasOld {
			old = &ch.old
		}
		s.accountLocked(ch.bucket, old, &ch.new)
		delta := ch.new.hash
		if ch.hasOld {
			delta ^= ch.old.hash
		}
		s.recent.record(ch.bucket, ch.new.ver.HLC, delta)
		applied[ch.idx] = true
	}
	s.acctMu.Unlock()
	if engineWait == nil {
		return applied, wait, nil
	}
	// The batch is visible and ordered in the log; the next writer of these
	// keys may go ahead and share its fsync. The caller's acknowledgement
	// still waits for it.
	s.unlockStripes(held)
	locked = false
	return applied, func() error {
		if err := engineWait(); err != nil {
			for _, ch := range changes {
				s.uncache(ch.key)
			}
			return fmt.Errorf("store: apply %d entries: sync: %w", len(ops), err)
		}
		return nil
	}, nil
}

// uncache forgets key in the cache, after an engine write whose outcome is
// unknown or that removed the key.
func (s *Store) uncache(key []byte) {
	if s.perStripe > 0 {
		s.stripes[s.stripeOf(key)].cache.forget(key)
	}
}

// writeSynced writes ops as one synced batch. With an engine that can defer
// the sync wait it returns once the batch is visible, and wait (to be
// called without the stripe locks) blocks until it is durable; otherwise
// wait is nil and the batch is durable already.
func (s *Store) writeSynced(ops []Op) (wait func() error, err error) {
	if d, ok := s.eng.(deferredSyncer); ok {
		return d.WriteDeferredSync(ops)
	}
	return nil, s.eng.Write(ops, true)
}

// storedRecord is what storedMany found of one key's stored record: its
// metadata (ok is false if there is none), and its cache record when the
// stripe's cache held it, for the write's update.
type storedRecord struct {
	cached *cachedKey
	meta   recMeta
	ok     bool
}

// minSortedLookup is the fewest cache misses an Apply looks up with one
// engine iterator (sortedGetter) rather than a Get each; below it the
// iterator's setup costs more than it saves.
const minSortedLookup = 16

// storedMany returns the stored record of each of sks (into out, reused),
// the storage keys of one write (stripes[i] is sks[i]'s stripe; the caller
// holds their locks), from the stripes' caches where they hold it and from
// the engine otherwise. When at least minSortedLookup keys miss the cache,
// it looks them up in ring order with one iterator (sortedGetter). That is
// several times faster for a run of neighbouring keys (a take-over's pull,
// a hand-off, a cleanup's removal). For a client's batch spread over the
// ring it is no slower: an iterator skips no table by its bloom filter, as
// a Get does, but saves a Get's setup per key (BenchmarkStoredRun: faster
// over 200,000 keys; batched puts on a node over 2,000,000 keys ran at the
// same rate).
func (s *Store) storedMany(out []storedRecord, stripes []int, sks [][]byte) ([]storedRecord, error) {
	out = slices.Grow(out[:0], len(sks))[:len(sks)]
	clear(out) // a key found nowhere must read as absent, whatever out held
	var missBuf [4]int
	misses := missBuf[:0]
	for i, sk := range sks {
		if s.perStripe > 0 {
			if c, m := s.stripes[stripes[i]].cache.lookup(sk[idLen:]); c != nil {
				out[i] = storedRecord{cached: c, meta: m, ok: true}
				continue
			}
		}
		misses = append(misses, i)
	}
	sg, isSorted := s.eng.(sortedGetter)
	if !isSorted || len(misses) < minSortedLookup {
		for _, i := range misses {
			e, err := s.current(sks[i])
			if err != nil {
				return nil, err
			}
			if e != nil {
				out[i] = storedRecord{meta: metaOf(sks[i], e), ok: true}
			}
		}
		return out, nil
	}
	// A write's keys are distinct (Apply keeps one entry per key, a
	// removal's scan yields each key once), so the order is strict, as
	// GetSorted needs.
	slices.SortFunc(misses, func(i, j int) int { return bytes.Compare(sks[i], sks[j]) })
	keys := make([][]byte, len(misses))
	for j, i := range misses {
		keys[j] = sks[i]
	}
	// found, not out, is what the callback writes to: a slice the callback
	// captured would escape, and out lives on Apply's stack.
	found := make([]storedRecord, len(keys))
	err := sg.GetSorted(keys, func(j int, v []byte, ok bool) error {
		if !ok {
			return nil
		}
		if e := s.decodeStored(keys[j], v); e != nil {
			found[j] = storedRecord{meta: metaOf(keys[j], e), ok: true}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for j, i := range misses {
		out[i] = found[j]
	}
	return out, nil
}

// current returns the decoded entry stored under sk, nil if absent. An
// unreadable record counts as absent, matching rebuild, which left it out
// of digests and stats; the write about to replace it repairs the key.
func (s *Store) current(sk []byte) (*Entry, error) {
	v, ok, err := s.eng.Get(sk)
	if err != nil || !ok {
		return nil, err
	}
	return s.decodeStored(sk, v), nil
}

// decodeStored decodes the engine value v stored under sk, nil if it is
// unreadable (current says why).
func (s *Store) decodeStored(sk, v []byte) *Entry {
	var e Entry
	if err := decodeValue(v, &e); err != nil {
		s.log.Warn("overwriting unreadable record", "storage_key", hex.EncodeToString(sk), "err", err)
		return nil
	}
	e.Key = sk[idLen:]
	return &e
}

// lockStripes locks the given stripes in ascending order, so that two
// multi-key Apply calls cannot deadlock. It sorts idx in place and returns
// the distinct stripes it locked, for unlockStripes.
func (s *Store) lockStripes(idx []int) (held []int) {
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		s.stripes[i].Lock()
	}
	return idx
}

func (s *Store) unlockStripes(held []int) {
	for _, i := range held {
		s.stripes[i].Unlock()
	}
}

// stripeOf hashes the key rather than using its ring position, so that Get
// finds a key's cache without computing the key's SHA-1.
func (s *Store) stripeOf(key []byte) int { return int(maphash.Bytes(s.seed, key) % numStripes) }

// recMeta is what Apply needs of a stored record to resolve a write
// against it and to account for replacing it: everything but the value.
type recMeta struct {
	ver  Version
	hash uint64 // entryHash
	size int64  // storedSize
	tomb bool
}

func metaOf(sk []byte, e *Entry) recMeta {
	return recMeta{ver: e.Version, hash: entryHash(sk, e), size: storedSize(e), tomb: e.Tombstone}
}

// account replaces old (nil if absent) by new (nil if removed) in the
// digests and stats.
func (s *Store) account(bucket int, old, new *recMeta) {
	s.acctMu.Lock()
	s.accountLocked(bucket, old, new)
	s.acctMu.Unlock()
}

func (s *Store) accountLocked(bucket int, old, new *recMeta) {
	for sign, m := range [2]*recMeta{old, new} {
		if m == nil {
			continue
		}
		s.digest[bucket] ^= m.hash
		d := int64(1)
		if sign == 0 {
			d = -1
		}
		if m.tomb {
			s.stats.Tombstones += d
		} else {
			s.stats.Keys += d
			s.live[bucket] += d
		}
		s.stats.Bytes += d * m.size
	}
}

// Stats returns the current counts.
func (s *Store) Stats() Stats {
	s.acctMu.Lock()
	defer s.acctMu.Unlock()
	return s.stats
}

// Scan calls fn on every entry whose ring position SHA-1(key) lies in the
// clockwise interval (a, b], tombstones included, in ring order starting
// just after a, until fn returns false. a == b means the whole ring. The
// view is a consistent snapshot per contiguous range (two when the interval
// wraps past zero). fn may call other Store methods except Close.
func (s *Store) Scan(a, b ring.ID, fn func(Entry) bool) error {
	if err := s.scanInterval(a, b, func(e Entry, _ ring.ID) bool { return fn(e) }); err != nil {
		return fmt.Errorf("store: scan (%s, %s]: %w", a.Short(), b.Short(), err)
	}
	return nil
}

// scanInterval walks (a, b] as one or two engine ranges.
func (s *Store) scanInterval(a, b ring.ID, fn func(Entry, ring.ID) bool) error {
	lo, loOK := after(a) // first storage key past every key at position a
	hi, hiOK := after(b)
	if !hiOK {
		hi = nil // b is the top of the ring: no upper bound
	}
	if a.Cmp(b) < 0 {
		return s.scanRange(lo, hi, fn)
	}
	// Wraps past zero (or a == b, the whole ring): (a, max] then [0, b].
	more := true
	if loOK {
		if err := s.scanRange(lo, nil, func(e Entry, pos ring.ID) bool {
			more = fn(e, pos)
			return more
		}); err != nil || !more {
			return err
		}
	}
	return s.scanRange(nil, hi, fn)
}

// scanRange decodes the engine range [lo, hi), skipping corrupt records.
func (s *Store) scanRange(lo, hi []byte, fn func(Entry, ring.ID) bool) error {
	return s.eng.Iterate(lo, hi, func(sk, v []byte) bool {
		e, pos, err := decodeRecord(sk, v)
		if err != nil {
			s.log.Warn("skipping unreadable record", "storage_key", hex.EncodeToString(sk), "err", err)
			return true
		}
		return fn(e, pos)
	})
}

// after returns id+1 as a storage-key bound: every storage key at ring
// position id sorts below it. ok is false when id is the top of the ring.
func after(id ring.ID) (bound []byte, ok bool) {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]++
		if id[i] != 0 {
			return id[:], true
		}
	}
	return nil, false
}

// CollectTombstones deletes tombstones written before olderThan (by the
// wall-clock part of their HLC) and returns how many it removed. Callers pass
// now minus a grace period longer than any replica can stay out of touch and
// still come back, so a stale replica cannot resurrect a collected delete.
// The deletes are not synced: if a crash undoes them, the next collection
// removes the same tombstones again.
func (s *Store) CollectTombstones(olderThan time.Time) (int, error) {
	cutoff := HLCAt(olderThan)
	n, err := s.removeWhere(ring.ID{}, ring.ID{}, func(e *Entry) bool {
		return e.Tombstone && e.Version.HLC < cutoff
	})
	if err != nil {
		return n, fmt.Errorf("store: collect tombstones: %w", err)
	}
	return n, nil
}

// Purge physically removes every entry in (a, b] (no tombstones left
// behind), for a range this node has handed off and no longer replicates. An
// entry rewritten while Purge runs is kept. Like CollectTombstones it does
// not sync: data a crash brings back is merely an extra copy.
func (s *Store) Purge(a, b ring.ID) (int, error) {
	n, err := s.removeWhere(a, b, func(*Entry) bool { return true })
	if err != nil {
		return n, fmt.Errorf("store: purge (%s, %s]: %w", a.Short(), b.Short(), err)
	}
	return n, nil
}

// RemoveIf physically removes the entries of (a, b] for which remove
// returns true, unless they are rewritten meanwhile. The replication layer
// uses it to drop copies of keys it has handed to their replicas, naming
// exactly the versions it handed over.
func (s *Store) RemoveIf(a, b ring.ID, remove func(Entry) bool) (int, error) {
	n, err := s.removeWhere(a, b, func(e *Entry) bool { return remove(*e) })
	if err != nil {
		return n, fmt.Errorf("store: remove (%s, %s]: %w", a.Short(), b.Short(), err)
	}
	return n, nil
}

// removeWhere deletes the entries of (a, b] matching pred, in chunks: the
// scan collects candidates, then each chunk is re-read under its stripe
// locks and only entries still at the scanned version are deleted.
func (s *Store) removeWhere(a, b ring.ID, pred func(*Entry) bool) (int, error) {
	const chunk = 512
	type cand struct {
		sk  []byte
		ver Version
	}
	var (
		cands   []cand
		removed int
		werr    error
	)
	flush := func() error {
		locks := make([]int, len(cands))
		for i, c := range cands {
			locks[i] = s.stripeOf(c.sk[idLen:])
		}
		defer s.unlockStripes(s.lockStripes(slices.Clone(locks)))
		sks := make([][]byte, len(cands))
		for i, c := range cands {
			sks[i] = c.sk
		}
		stored, err := s.storedMany(nil, locks, sks)
		if err != nil {
			return err
		}
		ops := make([]Op, 0, len(cands))
		olds := make([]recMeta, 0, len(cands))
		for i, c := range cands {
			if !stored[i].ok || stored[i].meta.ver != c.ver {
				continue // rewritten meanwhile: keep
			}
			ops = append(ops, Op{Key: c.sk, Delete: true})
			olds = append(olds, stored[i].meta)
		}
		if len(ops) > 0 {
			err := s.eng.Write(ops, false)
			// Removed, or unknown after an error: either way not cached.
			for _, op := range ops {
				s.uncache(op.Key[idLen:])
			}
			if err != nil {
				return err
			}
		}
		s.acctMu.Lock()
		for i, op := range ops {
			s.accountLocked(BucketOf(ring.ID(op.Key[:idLen])), &olds[i], nil)
		}
		s.acctMu.Unlock()
		removed += len(ops)
		cands = cands[:0]
		return nil
	}
	err := s.scanInterval(a, b, func(e Entry, pos ring.ID) bool {
		if !pred(&e) {
			return true
		}
		sk := make([]byte, 0, idLen+len(e.Key))
		sk = append(append(sk, pos[:]...), e.Key...)
		cands = append(cands, cand{sk: sk, ver: e.Version})
		if len(cands) == chunk {
			werr = flush()
		}
		return werr == nil
	})
	if err == nil {
		err = werr
	}
	if err == nil && len(cands) > 0 {
		err = flush()
	}
	return removed, err
}

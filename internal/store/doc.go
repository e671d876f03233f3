// Package store owns a node's local data: one latest Entry per key — a value
// or a tombstone — each stamped with a Version, kept in an embedded engine
// and merged by last-writer-wins. It is the bottom of the key-value layer;
// replication, quorums, hand-off and the anti-entropy protocol live in
// internal/kv and use this package's small API:
//
//   - Apply is the single write path (client writes, replication, read
//     repair, hand-off): an entry is stored only if its Version is newer than
//     the stored one, so every replica converges on the same value whatever
//     order writes arrive in. One Apply is one atomic, synced engine batch;
//     the engine (Pebble) lets concurrent synced batches share an fsync.
//     The stored version Apply compares against comes from the per-stripe
//     cache of recently read and written keys when it can
//     (Options.KeyCacheBytes) and from the engine otherwise.
//   - Get returns the entry including tombstones; the caller decides what a
//     tombstone means to the client. The same cache serves it, values
//     included, without the engine.
//   - Scan walks a ring interval (a, b] in ring order.
//   - BucketDigests and BucketEntries support anti-entropy.
//   - CollectTombstones drops deletes older than a grace period; Purge drops
//     a range handed off to another node.
//   - Stats gives the key, tombstone and byte counts behind the metrics;
//     CountKeys counts the keys of a ring interval (a node's primary range)
//     from per-bucket counts, scanning at most two buckets.
//
// # Versions
//
// A Version is a hybrid logical clock timestamp (wall milliseconds << 16 |
// logical counter, see Clock) plus the writer's node ID, ordered by HLC then
// node bytes: a total order every replica computes alike. Clock never runs
// backwards and moves past every timestamp it observes from peers.
//
// # Layout
//
// Engine keys are SHA-1(key) followed by the key, so keys sort by ring
// position and a ring interval is one contiguous range, or two when it wraps
// past zero. Engine values start with a format byte (currently 1), a flags
// byte (tombstone), the HLC and the node ID, then the value bytes; see
// record.go. Decoding rejects anything malformed with ErrCorrupt, never a
// panic; an unreadable record is treated as absent and repaired by the next
// write to its key.
//
// # Digests
//
// The ring is cut into NumBuckets (4096) arcs by the top 12 bits of the ring
// position. Each bucket's digest is the XOR of a 64-bit hash of (storage
// key, version, tombstone) over its entries, kept in memory, updated on every
// write and rebuilt by one scan on Open. Two replicas comparing a range
// exchange at most 8 bytes per bucket — 3.2 KiB for a tenth of the ring — and
// then the entries of the buckets that differ.
//
// XOR buckets rather than a Merkle tree: a write updates its bucket in O(1)
// (XOR out the old entry's hash, XOR in the new one) with no tree to rehash
// or persist, the digest state is a fixed 32 KiB whatever the data size, and
// XOR is order-independent, so equal contents give equal digests however
// they were written. The price is resolution: a differing bucket costs a
// transfer of its entries (1/4096 of the ring's data) rather than a
// logarithmic descent, and a one-word summary of a range (the XOR of its
// bucket digests) is all the hierarchy there is. A node's responsibility
// (a, b] does not align with bucket edges, and replicas of the same range
// hold different data outside it; so the at most two buckets that straddle
// the interval's ends are digested over just their entries inside (a, b],
// by a scan, and BucketEntries is restricted to the interval too.
//
// # Engines
//
// Store runs on an Engine: Pebble in Options.Dir for production, or an
// in-memory engine (Options.InMemory) for tests and simulations. The store's
// tests run the same suite on both.
package store

package store

// recentChanges remembers how the latest writes changed the bucket digests,
// so that digests can be computed as if those writes had not arrived yet
// (SettledDigests). Under a steady write load most buckets hold a write that
// one replica has applied and another has not, so plain digests differ
// almost everywhere, and anti-entropy compares keys in nearly every bucket
// every round: with 1,000,000 keys, 40-99% of a range's buckets per round,
// a sixth of the ring's throughput (docs/benchmarks.md). Digests that leave
// out writes younger than a horizon differ only where replicas disagree on
// older data.
//
// Forgetting a change is always safe: the digest then counts the write, as
// a plain digest does, and the worst outcome is a bucket compared key by key
// that did not need it. So the log keeps recentWindow of writes by version
// time, and at most maxRecentChanges of them.
type recentChanges struct {
	log    []digestChange // in the order applied; log[head:] is live
	head   int
	newest uint64 // largest HLC recorded
}

// digestChange is one applied write: its bucket, the new version's HLC, and
// the XOR that took the bucket's digest from before the write to after it.
type digestChange struct {
	bucket int
	hlc    uint64
	delta  uint64
}

const (
	// recentWindow must cover the horizons anti-entropy asks about (now
	// minus kv's RepairSettle, one second by default), plus clock skew
	// between replicas and the time a round takes.
	recentWindow = 10_000 << logicalBits // ten seconds of HLC
	// maxRecentChanges bounds the log's memory (24 bytes a change) when
	// writes outrun the window: 20,000 replica writes a second fill it in
	// about 13 s.
	maxRecentChanges = 1 << 18
)

// record adds a write's digest change and forgets changes older than the
// window, or the oldest ones past maxRecentChanges.
func (r *recentChanges) record(bucket int, hlc, delta uint64) {
	r.log = append(r.log, digestChange{bucket: bucket, hlc: hlc, delta: delta})
	r.newest = max(r.newest, hlc)
	r.forget(r.newest)
}

// forget drops changes from the front of the log that are older than the
// window before now (an HLC), and the oldest past maxRecentChanges. A log
// that empties gives its memory back, so a node idle after a burst of
// writes does not keep it: anti-entropy calls this every round.
func (r *recentChanges) forget(now uint64) {
	for r.head < len(r.log) && (len(r.log)-r.head > maxRecentChanges || r.log[r.head].hlc+recentWindow < now) {
		r.head++
	}
	switch {
	case r.head == len(r.log):
		r.log, r.head = nil, 0
	case r.head > len(r.log)/2:
		r.log = append(r.log[:0], r.log[r.head:]...)
		r.head = 0
	}
}

// undo takes the digests in d, indexed by bucket through at, back to before
// every remembered write whose version is above horizon; at returns -1 for
// buckets to leave alone.
func (r *recentChanges) undo(horizon uint64, at func(bucket int) int, d []BucketDigest) {
	for _, c := range r.log[r.head:] {
		if c.hlc <= horizon {
			continue
		}
		if i := at(c.bucket); i >= 0 {
			d[i].Digest ^= c.delta
		}
	}
}

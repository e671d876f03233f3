package store

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/chordkv/chordkv/internal/ring"
)

// BucketBits is how many top bits of a key's ring position select its
// digest bucket; NumBuckets is the resulting number of buckets on the ring.
const (
	BucketBits = 12
	NumBuckets = 1 << BucketBits
)

// BucketOf returns the digest bucket of ring position pos: its top
// BucketBits bits. Buckets are contiguous arcs, numbered clockwise from zero.
func BucketOf(pos ring.ID) int { return int(pos[0])<<4 | int(pos[1]>>4) }

// bucketBounds returns the engine key range [lo, hi) of a bucket; hi is nil
// for the last bucket.
func bucketBounds(bucket int) (lo, hi []byte) {
	var first ring.ID
	first[0], first[1] = byte(bucket>>4), byte(bucket<<4)
	if bucket == NumBuckets-1 {
		return first[:], nil
	}
	var next ring.ID
	next[0], next[1] = byte((bucket+1)>>4), byte((bucket+1)<<4)
	return first[:], next[:]
}

// bucketFirstLast returns the first and last ring positions of a bucket.
func bucketFirstLast(bucket int) (first, last ring.ID) {
	first[0], first[1] = byte(bucket>>4), byte(bucket<<4)
	last = first
	last[1] |= 0x0f
	for i := 2; i < len(last); i++ {
		last[i] = 0xff
	}
	return first, last
}

// entryHash is an entry's contribution to its bucket's digest: 64 bits of
// SHA-256 over (storage key, version, tombstone). A cryptographic hash keeps
// XOR aggregation honest: with a weak hash, unrelated entries could cancel.
// The value itself is left out because the version already names the write.
func entryHash(sk []byte, e *Entry) uint64 {
	h := sha256.New()
	h.Write(sk)
	var v [8 + idLen + 1]byte
	binary.BigEndian.PutUint64(v[:8], e.Version.HLC)
	copy(v[8:8+idLen], e.Version.Node[:])
	if e.Tombstone {
		v[8+idLen] = 1
	}
	h.Write(v[:])
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// BucketDigest is the digest of the entries of one bucket that lie in the
// interval it was computed for.
type BucketDigest struct {
	Bucket int
	Digest uint64
}

// BucketDigests returns, in ring order from the bucket holding a, the digest
// of every bucket overlapping the ring interval (a, b] (a == b: the whole
// ring), restricted to the entries inside the interval. Two replicas holding
// the same entries in (a, b] return identical slices whatever else they
// hold; a bucket whose digests differ is then reconciled with BucketEntries.
//
// Buckets wholly inside the interval are answered from memory. The at most
// two buckets straddling its ends are computed by scanning their entries in
// the interval, about 1/2048 of the ring's data.
func (s *Store) BucketDigests(a, b ring.ID) ([]BucketDigest, error) {
	return s.SettledDigests(a, b, 0)
}

// SettledDigests is BucketDigests as if the writes this store applied
// recently with versions above horizon (an HLC) had not arrived: what two
// replicas compare when writes are in flight between them (see
// recentChanges). Writes applied too long ago to remember count as in
// BucketDigests, and so do the at most two buckets straddling the interval's
// ends. Digests that agree mean the replicas agree on their older entries;
// digests that differ still need BucketEntries to say where. Horizon 0
// leaves nothing out: the digests are BucketDigests.
func (s *Store) SettledDigests(a, b ring.ID, horizon uint64) ([]BucketDigest, error) {
	ba, bb := BucketOf(a), BucketOf(b)
	n := (bb-ba+NumBuckets)%NumBuckets + 1
	if a == b || (a.Cmp(b) > 0 && ba == bb) {
		n = NumBuckets
	}
	out := make([]BucketDigest, n)
	var partial []int // indexes into out
	s.acctMu.Lock()
	for i := range out {
		bk := (ba + i) % NumBuckets
		out[i].Bucket = bk
		first, last := bucketFirstLast(bk)
		full := a == b || (bk != ba && ring.BetweenRightIncl(a, first, b) && ring.BetweenRightIncl(a, last, b))
		if full {
			out[i].Digest = s.digest[bk]
		} else {
			partial = append(partial, i)
		}
	}
	if horizon > 0 {
		// The horizon trails the clock by the settle time, far less
		// than the window: what is older than the window before it is
		// no longer asked about.
		s.recent.forget(horizon)
		s.recent.undo(horizon, func(bk int) int {
			i := (bk - ba + NumBuckets) % NumBuckets
			if i >= n || slices.Contains(partial, i) {
				return -1
			}
			return i
		}, out)
	}
	s.acctMu.Unlock()
	for _, i := range partial {
		var d uint64
		err := s.bucketEntries(out[i].Bucket, a, b, func(sk []byte, e *Entry) bool {
			d ^= entryHash(sk, e)
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("store: digests (%s, %s]: bucket %d: %w", a.Short(), b.Short(), out[i].Bucket, err)
		}
		out[i].Digest = d
	}
	return out, nil
}

// BucketEntries calls fn, in ring order, on each entry of the given bucket
// whose ring position lies in (a, b], tombstones included, until fn returns
// false: what two replicas exchange for a bucket whose digests differ.
func (s *Store) BucketEntries(bucket int, a, b ring.ID, fn func(Entry) bool) error {
	if bucket < 0 || bucket >= NumBuckets {
		return fmt.Errorf("store: bucket entries: bucket %d out of range [0, %d)", bucket, NumBuckets)
	}
	err := s.bucketEntries(bucket, a, b, func(_ []byte, e *Entry) bool { return fn(*e) })
	if err != nil {
		return fmt.Errorf("store: bucket %d entries (%s, %s]: %w", bucket, a.Short(), b.Short(), err)
	}
	return nil
}

func (s *Store) bucketEntries(bucket int, a, b ring.ID, fn func(sk []byte, e *Entry) bool) error {
	lo, hi := bucketBounds(bucket)
	return s.eng.Iterate(lo, hi, func(sk, v []byte) bool {
		e, pos, err := decodeRecord(sk, v)
		if err != nil {
			s.log.Warn("skipping unreadable record", "err", err)
			return true
		}
		if !ring.BetweenRightIncl(a, pos, b) {
			return true
		}
		return fn(sk, &e)
	})
}

// CountKeys returns how many entries whose latest write is a value (no
// tombstones, like Stats.Keys) lie in the ring interval (a, b]; a == b
// means the whole ring. Like BucketDigests it answers whole buckets from
// per-bucket counts kept on every write and scans only the at most two
// buckets straddling the interval's ends, so it costs a pass over 4096
// counters plus about 1/2048 of the data, whatever the interval: cheap
// enough for every metrics scrape.
func (s *Store) CountKeys(a, b ring.ID) (int64, error) {
	if a == b {
		return s.Stats().Keys, nil
	}
	ba, bb := BucketOf(a), BucketOf(b)
	n := (bb-ba+NumBuckets)%NumBuckets + 1
	if a.Cmp(b) > 0 && ba == bb {
		n = NumBuckets
	}
	var total int64
	var partial []int
	s.acctMu.Lock()
	for i := range n {
		bk := (ba + i) % NumBuckets
		first, last := bucketFirstLast(bk)
		if bk != ba && ring.BetweenRightIncl(a, first, b) && ring.BetweenRightIncl(a, last, b) {
			total += s.live[bk]
		} else {
			partial = append(partial, bk)
		}
	}
	s.acctMu.Unlock()
	for _, bk := range partial {
		err := s.bucketEntries(bk, a, b, func(_ []byte, e *Entry) bool {
			if !e.Tombstone {
				total++
			}
			return true
		})
		if err != nil {
			return 0, fmt.Errorf("store: count keys (%s, %s]: bucket %d: %w", a.Short(), b.Short(), bk, err)
		}
	}
	return total, nil
}

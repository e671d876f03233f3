package transport

import (
	"fmt"

	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// Limits on the replica wire beyond the message size itself. A correct
// node sends at most NumBuckets digests or bucket numbers; the rest is
// bounded by the gRPC message size (see MaxMessageBytes).
const (
	maxBuckets = store.NumBuckets
)

// Fetch streams a bucket's entries in chunks of at most fetchChunkEntries
// entries and, except for one oversized entry, about fetchChunkBytes bytes:
// small enough to keep a node's memory flat while it serves a range, big
// enough that a range costs few messages.
const (
	fetchChunkEntries = 512
	fetchChunkBytes   = 1 << 20
)

// messageHeadroom covers protobuf framing, versions and keys around the
// payload of a message.
const messageHeadroom = 256 << 10

// MaxMessageBytes is the largest gRPC message a node must accept and send
// with these key and value limits: a replica chunk (Apply and Fetch split
// batches at about fetchChunkBytes, so a chunk may end with one maximal
// entry past it) or a single maximal client request. It is never below
// gRPC's default of 4 MiB.
func MaxMessageBytes(maxKeyBytes, maxValueBytes int) int {
	return max(4<<20, fetchChunkBytes+maxKeyBytes+maxValueBytes+messageHeadroom)
}

// encodeConsistency and decodeConsistency translate the wire enum. An
// unknown value (a newer client) is refused rather than guessed at.
func encodeConsistency(c kv.Consistency) pb.Consistency {
	switch c {
	case kv.One:
		return pb.Consistency_CONSISTENCY_ONE
	case kv.Quorum:
		return pb.Consistency_CONSISTENCY_QUORUM
	case kv.All:
		return pb.Consistency_CONSISTENCY_ALL
	}
	return pb.Consistency_CONSISTENCY_UNSPECIFIED
}

func decodeConsistency(c pb.Consistency) (kv.Consistency, error) {
	switch c {
	case pb.Consistency_CONSISTENCY_UNSPECIFIED:
		return kv.Default, nil
	case pb.Consistency_CONSISTENCY_ONE:
		return kv.One, nil
	case pb.Consistency_CONSISTENCY_QUORUM:
		return kv.Quorum, nil
	case pb.Consistency_CONSISTENCY_ALL:
		return kv.All, nil
	}
	return kv.Default, fmt.Errorf("unknown consistency %d", int32(c))
}

// EncodeVersion and DecodeVersion carry a store.Version; the node ID must be
// exactly 20 bytes.
func EncodeVersion(v store.Version) *pb.Version {
	return &pb.Version{Hlc: v.HLC, Node: v.Node[:]}
}

func DecodeVersion(m *pb.Version) (store.Version, error) {
	if m == nil {
		return store.Version{}, fmt.Errorf("version is missing")
	}
	id, err := DecodeID(m.GetNode())
	if err != nil {
		return store.Version{}, fmt.Errorf("version node: %w", err)
	}
	return store.Version{HLC: m.GetHlc(), Node: id}, nil
}

func encodeEntry(e store.Entry) *pb.Entry {
	return &pb.Entry{Key: e.Key, Value: e.Value, Version: EncodeVersion(e.Version), Tombstone: e.Tombstone}
}

// decodeEntry validates one replicated entry: a key, a real version, and no
// value on a tombstone (the store would refuse the whole batch otherwise).
func decodeEntry(m *pb.Entry) (store.Entry, error) {
	if m == nil {
		return store.Entry{}, fmt.Errorf("entry is missing")
	}
	if len(m.GetKey()) == 0 {
		return store.Entry{}, fmt.Errorf("entry key is empty")
	}
	v, err := DecodeVersion(m.GetVersion())
	if err != nil {
		return store.Entry{}, fmt.Errorf("entry %q: %w", m.GetKey(), err)
	}
	if v.IsZero() {
		return store.Entry{}, fmt.Errorf("entry %q: version is zero", m.GetKey())
	}
	if m.GetTombstone() && len(m.GetValue()) > 0 {
		return store.Entry{}, fmt.Errorf("entry %q: tombstone carries a value", m.GetKey())
	}
	e := store.Entry{Key: m.GetKey(), Value: m.GetValue(), Version: v, Tombstone: m.GetTombstone()}
	if e.Tombstone {
		e.Value = nil
	}
	return e, nil
}

func decodeEntries(ms []*pb.Entry) ([]store.Entry, error) {
	out := make([]store.Entry, len(ms))
	for i, m := range ms {
		e, err := decodeEntry(m)
		if err != nil {
			return nil, fmt.Errorf("entries[%d]: %w", i, err)
		}
		out[i] = e
	}
	return out, nil
}

func encodeDigests(ds []store.BucketDigest) []*pb.BucketDigest {
	out := make([]*pb.BucketDigest, len(ds))
	for i, d := range ds {
		out[i] = &pb.BucketDigest{Bucket: uint32(d.Bucket), Digest: d.Digest}
	}
	return out
}

func decodeDigests(ms []*pb.BucketDigest) ([]store.BucketDigest, error) {
	if len(ms) > maxBuckets {
		return nil, fmt.Errorf("%d digests, more than the %d buckets", len(ms), maxBuckets)
	}
	out := make([]store.BucketDigest, len(ms))
	for i, m := range ms {
		b, err := decodeBucket(m.GetBucket())
		if err != nil {
			return nil, fmt.Errorf("digests[%d]: %w", i, err)
		}
		out[i] = store.BucketDigest{Bucket: b, Digest: m.GetDigest()}
	}
	return out, nil
}

func decodeBucket(b uint32) (int, error) {
	if b >= store.NumBuckets {
		return 0, fmt.Errorf("bucket %d out of range [0, %d)", b, store.NumBuckets)
	}
	return int(b), nil
}

func decodeBuckets(bs []uint32) ([]int, error) {
	if len(bs) > maxBuckets {
		return nil, fmt.Errorf("%d buckets, more than the %d there are", len(bs), maxBuckets)
	}
	out := make([]int, len(bs))
	for i, b := range bs {
		v, err := decodeBucket(b)
		if err != nil {
			return nil, fmt.Errorf("buckets[%d]: %w", i, err)
		}
		out[i] = v
	}
	return out, nil
}

func encodeBuckets(bs []int) []uint32 {
	out := make([]uint32, len(bs))
	for i, b := range bs {
		out[i] = uint32(b)
	}
	return out
}

// decodeRange reads a ring interval (from, to]; both ends are 20-byte IDs.
func decodeRange(from, to []byte) (a, b ring.ID, err error) {
	ia, err := DecodeID(from)
	if err != nil {
		return a, b, fmt.Errorf("from: %w", err)
	}
	ib, err := DecodeID(to)
	if err != nil {
		return a, b, fmt.Errorf("to: %w", err)
	}
	return ia, ib, nil
}

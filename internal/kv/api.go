package kv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// Consistency is how many of a key's replicas must answer.
type Consistency int

const (
	// Default lets the node decide: Quorum.
	Default Consistency = iota
	One
	Quorum
	All
)

// ParseConsistency reads one|quorum|all.
func ParseConsistency(s string) (Consistency, error) {
	switch s {
	case "one":
		return One, nil
	case "quorum", "":
		return Quorum, nil
	case "all":
		return All, nil
	}
	return Default, fmt.Errorf("%w: consistency must be one, quorum or all, not %q", ErrInvalidArgument, s)
}

func (c Consistency) String() string {
	switch c {
	case One:
		return "one"
	case All:
		return "all"
	}
	return "quorum"
}

// required is how many of the replicas must answer: one, a majority of r,
// or every replica there is. When the ring has fewer than r nodes the
// requirement is capped at the replicas that exist, so a small ring (or a
// ring of one) still serves.
func required(c Consistency, r, available int) int {
	var need int
	switch c {
	case One:
		need = 1
	case All:
		need = r
	default:
		need = r/2 + 1
	}
	return max(1, min(need, available))
}

// Errors callers tell apart; transports map them to status codes.
var (
	ErrNotFound        = errors.New("not found")
	ErrInvalidArgument = errors.New("invalid argument")
	ErrUnavailable     = errors.New("unavailable")
)

// Op is a client operation.
type Op int

const (
	OpGet Op = iota
	OpPut
	OpDelete
)

func (o Op) String() string { return [...]string{"get", "put", "delete"}[o] }

// Request is a client operation as it travels between nodes.
type Request struct {
	Op          Op
	Key, Value  []byte
	Consistency Consistency
}

// Item is one key of a batch request; reads ignore Value.
type Item struct {
	Key, Value []byte
}

// Keys returns the keys of items, in order.
func Keys(items []Item) [][]byte {
	keys := make([][]byte, len(items))
	for i, it := range items {
		keys[i] = it.Key
	}
	return keys
}

// itemsOf makes value-less items of keys, in order.
func itemsOf(keys [][]byte) []Item {
	items := make([]Item, len(keys))
	for i, k := range keys {
		items[i].Key = k
	}
	return items
}

// Result is one item's outcome in a batch.
type Result struct {
	// Entry is the value read, or for a write the key and the version it
	// was written with.
	Entry store.Entry
	// Err is this item's failure; ErrNotFound for a read of a missing key.
	Err error
	// Owner is the node the item was forwarded to and that answered it;
	// zero when this node coordinated the item.
	Owner chord.Peer
}

// ReadResult is one replica's copy of a key.
type ReadResult struct {
	Entry store.Entry
	Found bool
}

// Ring is what kv needs from chord; *chord.Node has it.
type Ring interface {
	Self() chord.Peer
	Neighbors() chord.Neighbors
	IsMember() bool
	Owns(id ring.ID) bool
	Lookup(ctx context.Context, id ring.ID) (chord.LookupResult, error)
	Predecessors(ctx context.Context, k int) ([]chord.Peer, error)
}

// Local is the node's own storage; *store.Store has it.
type Local interface {
	Get(key []byte) (store.Entry, bool, error)
	// ApplyAsync merges entries, last writer wins, and returns once they
	// are written, with a wait that returns once they are durable (see
	// store.Store.ApplyAsync). Clients' writes take it.
	ApplyAsync(entries ...store.Entry) (applied []bool, wait func() error, err error)
	// ApplyUncached is ApplyAsync for entries moving between replicas: it
	// caches no key it did not hold in its cache (see
	// store.Store.ApplyUncached).
	ApplyUncached(entries ...store.Entry) (applied []bool, wait func() error, err error)
	// SettledDigests returns the bucket digests of (a, b], leaving out
	// recent writes with versions above horizon, if it is not 0 (see
	// store.Store.SettledDigests).
	SettledDigests(a, b ring.ID, horizon uint64) ([]store.BucketDigest, error)
	BucketEntries(bucket int, a, b ring.ID, fn func(store.Entry) bool) error
	CollectTombstones(olderThan time.Time) (int, error)
	Scan(a, b ring.ID, fn func(store.Entry) bool) error
	RemoveIf(a, b ring.ID, remove func(store.Entry) bool) (int, error)
}

// Peers carries kv's calls to other nodes. Every method honours ctx's
// deadline. Forward must report a missing key as ErrNotFound and a refused
// request as ErrInvalidArgument (wrapped), so that they are not retried
// elsewhere.
type Peers interface {
	// Forward hands a client request to another node, which coordinates it
	// without forwarding it again.
	Forward(ctx context.Context, to chord.Peer, req Request) (store.Entry, error)
	// ForwardMany is Forward for a batch of one operation: results[i]
	// answers items[i], a missing key as ErrNotFound. The error is for the
	// call as a whole (the node did not answer); items that failed on the
	// node carry their own error.
	ForwardMany(ctx context.Context, to chord.Peer, op Op, items []Item, c Consistency) ([]Result, error)
	// Apply merges entries into the peer's store: repair traffic, which
	// read leases never refuse.
	Apply(ctx context.Context, to chord.Peer, entries []store.Entry) (int, error)
	// Replicate is Apply for a client's write that coordinator
	// coordinates: the peer refuses it with ErrLeased when it leased a
	// range holding one of the keys to another node (Node.ApplyFrom).
	Replicate(ctx context.Context, to, coordinator chord.Peer, entries []store.Entry) (int, error)
	// GrantLease asks the peer for a read lease over (from, to] for d,
	// held by holder (Node.GrantLease); ErrLeased when another node holds
	// an overlapping one.
	GrantLease(ctx context.Context, to, holder chord.Peer, from, until ring.ID, d time.Duration) error
	// Read returns the peer's entries of keys, tombstones included:
	// results[i] answers keys[i].
	Read(ctx context.Context, to chord.Peer, keys [][]byte) ([]ReadResult, error)
	// ReadStored is Read from the peer's store alone, even while the peer
	// is taking over its ranges (Node.ReadReplica with storedOnly).
	ReadStored(ctx context.Context, to chord.Peer, keys [][]byte) ([]ReadResult, error)
	// Digests returns the peer's bucket digests of (a, b]; with horizon
	// above 0, its settled digests (Local.SettledDigests). A peer that
	// predates settled digests answers with plain ones, which only makes
	// more buckets differ.
	// repair marks periodic repair's requests, which a peer still taking
	// over its ranges declines (Node.DeclineRepair).
	Digests(ctx context.Context, to chord.Peer, a, b ring.ID, horizon uint64, repair bool) ([]store.BucketDigest, error)
	// Fetch calls fn with batches of the entries of the given buckets that
	// lie in (a, b] on the peer.
	Fetch(ctx context.Context, to chord.Peer, a, b ring.ID, buckets []int, fn func([]store.Entry) error) error
	// Versions is Fetch without the values: every entry has its key,
	// version and tombstone flag, and no Value.
	Versions(ctx context.Context, to chord.Peer, a, b ring.ID, buckets []int, fn func([]store.Entry) error) error
}

// WithoutValues wraps a Versions callback so that it sees each batch with
// its values dropped: how a Peers serves Versions from entries that carry
// them.
func WithoutValues(fn func([]store.Entry) error) func([]store.Entry) error {
	return func(batch []store.Entry) error {
		for i := range batch {
			batch[i].Value = nil
		}
		return fn(batch)
	}
}

package transport

import (
	"context"
	"errors"
	"fmt"

	"github.com/chordkv/chordkv/internal/kv"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// Limits of one MultiGet or MultiPut request. They are request-level: a
// request over them is refused as a whole with InvalidArgument, while a
// problem with one item is reported in that item's result.
const (
	// MaxBatchItems caps the keys of one batch request, so that one call
	// cannot occupy a node for an unbounded time.
	MaxBatchItems = 1000
	// MaxBatchKeyBytes caps the total key bytes of one batch request.
	// Results echo every key, so this keeps a response's keys, plus
	// batchResponseBudget of values, under the smallest message size a node
	// accepts (MaxMessageBytes is never below 4 MiB).
	MaxBatchKeyBytes = 1 << 20
)

const (
	// batchResponseBudget bounds the value bytes of one MultiGet response.
	// A value that would push the response past it is not returned (its
	// result says so) unless it is the first, which always fits as a
	// single Get's response does.
	batchResponseBudget = 2 << 20
	// maxItemErrorBytes bounds one item's error text in a response.
	maxItemErrorBytes = 512
)

// ErrResponseFull is the per-item error of a key whose value did not fit
// in the MultiGet response; the item's response_full flag says so too, and
// a forwarding node passes the owner's flag on. Clients ask for the key
// again in a later request (matching the text with nodes that predate the
// flag).
var ErrResponseFull = errors.New("response size limit reached: read this key in another request")

// checkKeys is checkBatch for a request of keys.
func checkKeys(keys [][]byte) error {
	keyBytes := 0
	for _, k := range keys {
		keyBytes += len(k)
	}
	return checkBatch(len(keys), keyBytes)
}

// checkBatch refuses a batch that is over the request-level limits.
func checkBatch(n, keyBytes int) error {
	if n > MaxBatchItems {
		return invalidArgument(fmt.Errorf("batch has %d items, the limit is %d", n, MaxBatchItems))
	}
	if keyBytes > MaxBatchKeyBytes {
		return invalidArgument(fmt.Errorf("batch keys total %d bytes, the limit is %d", keyBytes, MaxBatchKeyBytes))
	}
	return nil
}

// itemError is an item's error as the response carries it: the
// replication layer's message, bounded in length.
func itemError(err error) string {
	s := err.Error()
	if len(s) > maxItemErrorBytes {
		s = s[:maxItemErrorBytes] + "..."
	}
	return s
}

// reportBatchOwner sets the OwnerHeader to the first forwarded item's owner,
// if any. Only one is reported: to a client routing by a ring view, any
// forwarded item means the view is stale, and one refresh corrects every
// key.
func reportBatchOwner(ctx context.Context, results []kv.Result) {
	for _, r := range results {
		if r.Owner.Addr != "" {
			setOwnerHeader(ctx, r.Owner)
			return
		}
	}
}

// batch checks a batch request of keys against the request-level limits,
// runs it through run with the request's consistency and forwarded flag
// under the request's deadline, and reports a forwarded item's owner.
func (s *KVServer) batch(ctx context.Context, keys [][]byte, c pb.Consistency,
	run func(context.Context, kv.Consistency, bool) []kv.Result) ([]kv.Result, error) {
	if err := checkKeys(keys); err != nil {
		return nil, err
	}
	ctx, cancel, cons, fwd, err := s.clientRequest(ctx, c)
	if err != nil {
		return nil, err
	}
	defer cancel()
	got := run(ctx, cons, fwd)
	reportBatchOwner(ctx, got)
	return got, nil
}

// MultiGet implements pb.KVServer. The replication layer groups the keys
// by owner: the keys this node owns cost one local read and one call per
// other replica, the keys of each other owner one forwarded call (unless
// the request was itself forwarded, when all are coordinated here).
func (s *KVServer) MultiGet(ctx context.Context, req *pb.MultiGetRequest) (*pb.MultiGetResponse, error) {
	keys := req.GetKeys()
	got, err := s.batch(ctx, keys, req.GetConsistency(), func(ctx context.Context, cons kv.Consistency, fwd bool) []kv.Result {
		return s.node.GetMany(ctx, keys, cons, fwd)
	})
	if err != nil {
		return nil, err
	}
	results := make([]*pb.GetResult, len(keys))
	// Bound the response in request order, so which values are left out
	// does not depend on which reads finished first.
	size := 0
	for i, g := range got {
		r := &pb.GetResult{Key: keys[i]}
		results[i] = r
		switch {
		case errors.Is(g.Err, kv.ErrNotFound):
			// Not found is an answer, not a failure: found stays false.
		case g.Err != nil:
			r.Error = itemError(g.Err)
			r.ResponseFull = errors.Is(g.Err, ErrResponseFull) // the owner's, when forwarded
		case size > 0 && size+len(g.Entry.Value) > batchResponseBudget:
			r.Error, r.ResponseFull = ErrResponseFull.Error(), true
		default:
			size += len(g.Entry.Value)
			r.Found, r.Value, r.Version = true, g.Entry.Value, EncodeVersion(g.Entry.Version)
		}
	}
	return &pb.MultiGetResponse{Results: results}, nil
}

// MultiPut implements pb.KVServer like MultiGet: the items this node owns
// share one local write and one call per other replica; there is no
// atomicity across items. The request's size is bounded by the gRPC message
// size, each value by --max-value-bytes (a per-item error).
func (s *KVServer) MultiPut(ctx context.Context, req *pb.MultiPutRequest) (*pb.MultiPutResponse, error) {
	items := make([]kv.Item, len(req.GetItems()))
	for i, it := range req.GetItems() {
		items[i] = kv.Item{Key: it.GetKey(), Value: it.GetValue()}
	}
	keys := kv.Keys(items)
	got, err := s.batch(ctx, keys, req.GetConsistency(), func(ctx context.Context, cons kv.Consistency, fwd bool) []kv.Result {
		return s.node.PutMany(ctx, items, cons, fwd)
	})
	if err != nil {
		return nil, err
	}
	return &pb.MultiPutResponse{Results: writeResults(keys, got)}, nil
}

// MultiDelete implements pb.KVServer like MultiPut.
func (s *KVServer) MultiDelete(ctx context.Context, req *pb.MultiDeleteRequest) (*pb.MultiDeleteResponse, error) {
	keys := req.GetKeys()
	got, err := s.batch(ctx, keys, req.GetConsistency(), func(ctx context.Context, cons kv.Consistency, fwd bool) []kv.Result {
		return s.node.DeleteMany(ctx, keys, cons, fwd)
	})
	if err != nil {
		return nil, err
	}
	return &pb.MultiDeleteResponse{Results: writeResults(keys, got)}, nil
}

// writeResults is a batch of writes' answers, in request order; each echoes
// its key, refused ones included.
func writeResults(keys [][]byte, got []kv.Result) []*pb.PutResult {
	results := make([]*pb.PutResult, len(got))
	for i, g := range got {
		r := &pb.PutResult{Key: keys[i]}
		results[i] = r
		if g.Err != nil {
			r.Error = itemError(g.Err)
			continue
		}
		r.Version = EncodeVersion(g.Entry.Version)
	}
	return results
}

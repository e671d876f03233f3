package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/chordkv/chordkv/internal/chord"
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
	// batchWorkers bounds how many items of one batch run at once: enough
	// to overlap the replica round trips of many keys, few enough that one
	// batch cannot flood the node with goroutines and peer calls.
	batchWorkers = 32
	// batchResponseBudget bounds the value bytes of one MultiGet response.
	// A value that would push the response past it is not returned (its
	// result says so) unless it is the first, which always fits as a
	// single Get's response does.
	batchResponseBudget = 2 << 20
	// maxItemErrorBytes bounds one item's error text in a response.
	maxItemErrorBytes = 512
)

// errResponseFull is the per-item error of a key whose value did not fit
// in the MultiGet response.
var errResponseFull = errors.New("response size limit reached: read this key in another request")

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

// runBatch calls item(i) for every i in [0, n) on at most batchWorkers
// goroutines and returns when all have run. Each item writes only its own
// result slot, so no result needs a lock.
func runBatch(n int, item func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(batchWorkers, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				item(i)
			}
		})
	}
	wg.Wait()
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

// batchOwners collects the owners that items of a batch were forwarded to.
// Only the first is reported in the OwnerHeader: to a client routing by a
// ring view, any forwarded item means the view is stale, and one refresh
// corrects every key.
type batchOwners struct {
	owners []chord.Peer // one slot per item
}

func newBatchOwners(n int) *batchOwners { return &batchOwners{owners: make([]chord.Peer, n)} }

// ctx returns the context item i runs under; see reportOwner.
func (b *batchOwners) ctx(ctx context.Context, fwd bool, i int) context.Context {
	return reportOwner(ctx, fwd, &b.owners[i])
}

// report sets the OwnerHeader to the first forwarded item's owner, if any.
func (b *batchOwners) report(ctx context.Context) {
	for _, o := range b.owners {
		if o.Addr != "" {
			setOwnerHeader(ctx, o)
			return
		}
	}
}

// MultiGet implements pb.KVServer. Each key runs through the same
// replication-layer Get as a single request, batchWorkers at a time, with
// the request's forwarded flag: a key this node does not own is forwarded
// to its owner on its own.
//
// Next step: group the keys by owner inside the kv layer, so that a batch
// costs one forwarded call and one replica Read/Apply round per owner
// instead of one per key.
func (s *KVServer) MultiGet(ctx context.Context, req *pb.MultiGetRequest) (*pb.MultiGetResponse, error) {
	keys := req.GetKeys()
	keyBytes := 0
	for _, k := range keys {
		keyBytes += len(k)
	}
	if err := checkBatch(len(keys), keyBytes); err != nil {
		return nil, err
	}
	ctx, cancel, cons, fwd, err := s.clientRequest(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	defer cancel()
	results := make([]*pb.GetResult, len(keys))
	owners := newBatchOwners(len(keys))
	runBatch(len(keys), func(i int) {
		r := &pb.GetResult{Key: keys[i]}
		results[i] = r
		e, err := s.node.Get(owners.ctx(ctx, fwd, i), keys[i], cons, fwd)
		switch {
		case errors.Is(err, kv.ErrNotFound):
			// Not found is an answer, not a failure: found stays false.
		case err != nil:
			r.Error = itemError(err)
		default:
			r.Found, r.Value, r.Version = true, e.Value, EncodeVersion(e.Version)
		}
	})
	owners.report(ctx)
	// Bound the response in request order, so which values are left out
	// does not depend on which reads finished first.
	size := 0
	for _, r := range results {
		if !r.Found {
			continue
		}
		if size > 0 && size+len(r.Value) > batchResponseBudget {
			r.Found, r.Value, r.Version, r.Error = false, nil, nil, errResponseFull.Error()
			continue
		}
		size += len(r.Value)
	}
	return &pb.MultiGetResponse{Results: results}, nil
}

// MultiPut implements pb.KVServer like MultiGet: each item is an
// independent single-key Put, batchWorkers at a time; there is no
// atomicity across items. The request's size is bounded by the gRPC
// message size, each value by --max-value-bytes (a per-item error).
//
// Next step, as for MultiGet: one replica Apply per owner for the whole
// batch instead of one per key.
func (s *KVServer) MultiPut(ctx context.Context, req *pb.MultiPutRequest) (*pb.MultiPutResponse, error) {
	items := req.GetItems()
	keyBytes := 0
	for _, it := range items {
		keyBytes += len(it.GetKey())
	}
	if err := checkBatch(len(items), keyBytes); err != nil {
		return nil, err
	}
	ctx, cancel, cons, fwd, err := s.clientRequest(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	defer cancel()
	results := make([]*pb.PutResult, len(items))
	owners := newBatchOwners(len(items))
	runBatch(len(items), func(i int) {
		it := items[i]
		r := &pb.PutResult{Key: it.GetKey()}
		results[i] = r
		v, err := s.node.Put(owners.ctx(ctx, fwd, i), it.GetKey(), it.GetValue(), cons, fwd)
		if err != nil {
			r.Error = itemError(err)
			return
		}
		r.Version = EncodeVersion(v)
	})
	owners.report(ctx)
	return &pb.MultiPutResponse{Results: results}, nil
}

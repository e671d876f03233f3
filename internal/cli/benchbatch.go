package cli

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/chordkv/chordkv/internal/client"
	"github.com/chordkv/chordkv/internal/transport"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// errBenchNotFound is a batch get's per-key "not found": the keys were
// preloaded, so, as with single gets, a missing one is a failure.
var errBenchNotFound = errors.New("key not found")

// rpcOutcome is one batch RPC's result.
type rpcOutcome struct {
	keys    int
	failed  int   // keys with a per-item error
	itemErr error // the first per-item error
	err     error // the RPC's own error: every key failed
	elapsed time.Duration
}

// batchRound sends one batch of b.batch random keys and accounts for it:
// ops counts keys written or read, errs keys that failed, and h gets one
// latency per successful RPC. With client routing the batch is split by
// owner and the parts go out in parallel, one RPC each, so a round takes
// as long as its slowest owner; with endpoint routing the whole batch goes
// to c. Latency counts from due, when set (see pacer), else from each send.
func (b *bencher) batchRound(ctx context.Context, c pb.KVClient, op string, rng *mrand.Rand, h *hdrhistogram.Histogram, over func() bool, due time.Time) {
	keys := make([][]byte, b.batch)
	for i := range keys {
		keys[i] = b.keys[rng.IntN(len(b.keys))]
	}
	groups := b.groupByOwner(keys)
	outs := make([]rpcOutcome, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() { outs[i] = b.batchCall(ctx, c, op, g, due) })
	}
	wg.Wait()
	for _, o := range outs {
		if over() && (o.err != nil || o.failed > 0) {
			// Cut off by the end of the run, which also ends the
			// server's work on the call: items that failed then are
			// neither results nor errors.
			if o.err == nil {
				b.ops.Add(int64(o.keys - o.failed))
			}
			continue
		}
		if o.err != nil {
			b.errs.Add(int64(o.keys))
			b.firstErr.CompareAndSwap(nil, &o.err)
			continue
		}
		b.ops.Add(int64(o.keys - o.failed))
		if o.failed > 0 {
			b.errs.Add(int64(o.failed))
			b.firstErr.CompareAndSwap(nil, &o.itemErr)
		}
		_ = h.RecordValue(min(o.elapsed.Microseconds(), h.HighestTrackableValue()))
	}
}

// groupByOwner splits keys by their owner in the router's snapshot. With
// endpoint routing, or while the router knows no member, it is one group.
func (b *bencher) groupByOwner(keys [][]byte) [][][]byte {
	if b.router == nil || len(keys) == 0 {
		return [][][]byte{keys}
	}
	if _, ok := b.router.Owner(keys[0]); !ok {
		return [][][]byte{keys}
	}
	return groupBy(keys, func(k []byte) string {
		m, _ := b.router.Owner(k)
		return m.Addr
	})
}

// batchCall sends one batch RPC of keys with the --timeout deadline: to
// their owner with client routing (router.Do routes by the first key, and
// the group shares its owner), falling back to c when the router cannot
// route it; to c with endpoint routing.
func (b *bencher) batchCall(ctx context.Context, c pb.KVClient, op string, keys [][]byte, due time.Time) rpcOutcome {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	out := rpcOutcome{keys: len(keys)}
	start := due
	if start.IsZero() {
		start = time.Now()
	}
	if b.router != nil {
		err := b.router.Do(ctx, keys[0], func(ctx context.Context, cc grpc.ClientConnInterface, opts ...grpc.CallOption) error {
			var err error
			out.failed, out.itemErr, err = b.batchRPC(ctx, pb.NewKVClient(cc), op, keys, opts...)
			return err
		})
		if !client.Unroutable(err) {
			out.err, out.elapsed = err, time.Since(start)
			return out
		}
		b.fallbacks.Add(1)
	}
	var hdr metadata.MD
	var err error
	out.failed, out.itemErr, err = b.batchRPC(ctx, c, op, keys, grpc.Header(&hdr))
	out.err, out.elapsed = err, time.Since(start)
	if len(hdr.Get(transport.OwnerHeader)) > 0 {
		b.redirects.Add(1)
	}
	return out
}

// batchRPC is one MultiGet, MultiPut or MultiDelete (op get, put or del) of
// keys over c. It returns how many keys failed in an answered call, and the
// first such failure.
func (b *bencher) batchRPC(ctx context.Context, c pb.KVClient, op string, keys [][]byte, opts ...grpc.CallOption) (int, error, error) {
	switch op {
	case benchGet:
		res, err := c.MultiGet(ctx, &pb.MultiGetRequest{Keys: keys, Consistency: b.cons}, opts...)
		return batchOutcome("multi-get", keys, res.GetResults(), err, func(r *pb.GetResult) error {
			if r.GetError() == "" && !r.GetFound() {
				return errBenchNotFound
			}
			return itemFailure(r)
		})
	case benchPut:
		items := make([]*pb.KeyValue, len(keys))
		for i, k := range keys {
			items[i] = &pb.KeyValue{Key: k, Value: b.value}
		}
		res, err := c.MultiPut(ctx, &pb.MultiPutRequest{Items: items, Consistency: b.cons}, opts...)
		return batchOutcome("multi-put", keys, res.GetResults(), err, itemFailure[*pb.PutResult])
	case benchDel:
		res, err := c.MultiDelete(ctx, &pb.MultiDeleteRequest{Keys: keys, Consistency: b.cons}, opts...)
		return batchOutcome("multi-delete", keys, res.GetResults(), err, itemFailure[*pb.PutResult])
	default:
		return 0, nil, fmt.Errorf("bench: op %q has no batch RPC", op)
	}
}

// batchItem is what batchOutcome reads of one item of a batch answer.
type batchItem interface {
	GetKey() []byte
	GetError() string
}

// itemFailure is an item's own error, nil when it succeeded.
func itemFailure[R batchItem](r R) error {
	if r.GetError() != "" {
		return errors.New(r.GetError())
	}
	return nil
}

// batchOutcome accounts for the answer to a batch call named what: the
// call's own error (err, or an answer that does not have one result per
// key), else how many items failed and the first failure.
func batchOutcome[R batchItem](what string, keys [][]byte, results []R, err error, failure func(R) error) (int, error, error) {
	if err != nil {
		return 0, nil, fmt.Errorf("%s of %d keys: %w", what, len(keys), err)
	}
	if len(results) != len(keys) {
		return 0, nil, fmt.Errorf("%s of %d keys: node answered %d results", what, len(keys), len(results))
	}
	failed := 0
	var first error
	for _, r := range results {
		if ferr := failure(r); ferr != nil {
			if failed == 0 {
				first = fmt.Errorf("%s: %w", r.GetKey(), ferr)
			}
			failed++
		}
	}
	return failed, first, nil
}

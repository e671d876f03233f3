package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

var _ kv.Peers = (*Client)(nil)

// WithMaxMessageBytes raises the largest message a call may send or
// receive; see MaxMessageBytes.
func WithMaxMessageBytes(n int) ClientOption {
	return WithDialOptions(MessageSizeOptions(n))
}

// MessageSizeOptions lets every call on a connection send and receive
// messages of up to n bytes.
func MessageSizeOptions(n int) grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(n), grpc.MaxCallSendMsgSize(n))
}

// Forward implements kv.Peers: it sends a client request to another node
// marked as forwarded, so that node coordinates it. A missing key and a
// refused request come back as kv.ErrNotFound and kv.ErrInvalidArgument
// with the remote message, so kv does not retry them elsewhere.
func (c *Client) Forward(ctx context.Context, to chord.Peer, req kv.Request) (store.Entry, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, ForwardedHeader, "1")
	cons := encodeConsistency(req.Consistency)
	out := store.Entry{Key: req.Key}
	err := c.call(ctx, to.Addr, "forward "+req.Op.String(), func(ctx context.Context, cc *grpc.ClientConn) error {
		client := pb.NewKVClient(cc)
		var v *pb.Version
		switch req.Op {
		case kv.OpGet:
			resp, err := client.Get(ctx, &pb.GetRequest{Key: req.Key, Consistency: cons})
			if err != nil {
				return err
			}
			out.Value, v = resp.GetValue(), resp.GetVersion()
		case kv.OpPut:
			resp, err := client.Put(ctx, &pb.PutRequest{Key: req.Key, Value: req.Value, Consistency: cons})
			if err != nil {
				return err
			}
			out.Value, v = req.Value, resp.GetVersion()
		case kv.OpDelete:
			resp, err := client.Delete(ctx, &pb.DeleteRequest{Key: req.Key, Consistency: cons})
			if err != nil {
				return err
			}
			out.Tombstone, v = true, resp.GetVersion()
		default:
			return fmt.Errorf("unknown operation %d", req.Op)
		}
		var err error
		out.Version, err = DecodeVersion(v)
		return err
	})
	if err != nil {
		return store.Entry{}, fromKVStatus(to.Addr, err)
	}
	return out, nil
}

// fromKVStatus turns the answers a client must not retry elsewhere back into
// kv's errors, naming the node and keeping its message; everything else
// stays as it is (kv treats it as "try the next replica").
func fromKVStatus(addr string, err error) error {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return err
	}
	st := se.GRPCStatus()
	switch st.Code() {
	case codes.NotFound:
		return fmt.Errorf("%w: %s: %s", kv.ErrNotFound, addr, st.Message())
	case codes.InvalidArgument:
		// The remote message already names the limit; drop its own
		// "invalid argument: " so it is not said twice.
		msg := strings.TrimPrefix(st.Message(), kv.ErrInvalidArgument.Error()+": ")
		return fmt.Errorf("%w: %s: %s", kv.ErrInvalidArgument, addr, msg)
	}
	return err
}

// Apply implements kv.Peers. Large batches go as several calls of at most
// about fetchChunkBytes each, so a batch of many small entries never
// exceeds the receiver's message limit; applying is idempotent, so a
// partial failure is safe to retry whole.
func (c *Client) Apply(ctx context.Context, to chord.Peer, entries []store.Entry) (int, error) {
	return c.apply(ctx, to, "", entries)
}

// Replicate implements kv.Peers: Apply naming the coordinator, so that a
// replica can refuse a write to a range it leased to another node
// (kv.ErrLeased).
func (c *Client) Replicate(ctx context.Context, to, coordinator chord.Peer, entries []store.Entry) (int, error) {
	return c.apply(ctx, to, coordinator.Addr, entries)
}

func (c *Client) apply(ctx context.Context, to chord.Peer, coordinator string, entries []store.Entry) (int, error) {
	applied := 0
	ch := newChunker(func(batch []*pb.Entry) error {
		err := c.call(ctx, to.Addr, "apply", func(ctx context.Context, cc *grpc.ClientConn) error {
			resp, err := pb.NewReplicaClient(cc).Apply(ctx, &pb.ApplyRequest{Entries: batch, Coordinator: coordinator})
			if err != nil {
				return err
			}
			applied += int(resp.GetApplied())
			return nil
		})
		return fromLeaseStatus(err)
	})
	for _, e := range entries {
		if err := ch.add(encodeEntry(e)); err != nil {
			return applied, err
		}
	}
	return applied, ch.flush()
}

// readManyChunk bounds the keys of one ReadMany call; see maxReadManyKeys.
const readManyChunk = MaxBatchItems

// Read implements kv.Peers with ReadMany calls: a replica answers as many
// keys as fit its response budget, and the rest are asked again. A peer
// that predates ReadMany (Unimplemented) is read one key per call, so a
// rolling upgrade keeps serving reads.
func (c *Client) Read(ctx context.Context, to chord.Peer, keys [][]byte) ([]kv.ReadResult, error) {
	return c.read(ctx, to, keys, false)
}

// ReadStored implements kv.Peers: Read with stored_only set. A peer that
// predates the flag never reads its successor, so reading it one key per
// call (or ignoring the flag) answers the same.
func (c *Client) ReadStored(ctx context.Context, to chord.Peer, keys [][]byte) ([]kv.ReadResult, error) {
	return c.read(ctx, to, keys, true)
}

func (c *Client) read(ctx context.Context, to chord.Peer, keys [][]byte, storedOnly bool) ([]kv.ReadResult, error) {
	out := make([]kv.ReadResult, 0, len(keys))
	for len(out) < len(keys) {
		rest := keys[len(out):]
		rest = rest[:min(len(rest), readManyChunk)]
		var got []*pb.ReadResponse
		err := c.call(ctx, to.Addr, "read", func(ctx context.Context, cc *grpc.ClientConn) error {
			resp, err := pb.NewReplicaClient(cc).ReadMany(ctx, &pb.ReadManyRequest{Keys: rest, StoredOnly: storedOnly})
			got = resp.GetResults()
			return err
		})
		if status.Code(err) == codes.Unimplemented {
			return c.readOneByOne(ctx, to, keys, out)
		}
		if err != nil {
			return nil, err
		}
		if len(got) == 0 || len(got) > len(rest) {
			return nil, fmt.Errorf("read %d keys from %s: %d results", len(rest), to.Addr, len(got))
		}
		for i, r := range got {
			rr, err := decodeRead(rest[i], r)
			if err != nil {
				return nil, fmt.Errorf("read from %s: %w", to.Addr, err)
			}
			out = append(out, rr)
		}
	}
	return out, nil
}

// readOneByOne completes out with single-key Read calls.
func (c *Client) readOneByOne(ctx context.Context, to chord.Peer, keys [][]byte, out []kv.ReadResult) ([]kv.ReadResult, error) {
	for _, key := range keys[len(out):] {
		var got *pb.ReadResponse
		err := c.call(ctx, to.Addr, "read", func(ctx context.Context, cc *grpc.ClientConn) error {
			var err error
			got, err = pb.NewReplicaClient(cc).Read(ctx, &pb.ReadRequest{Key: key})
			return err
		})
		if err != nil {
			return nil, err
		}
		rr, err := decodeRead(key, got)
		if err != nil {
			return nil, fmt.Errorf("read from %s: %w", to.Addr, err)
		}
		out = append(out, rr)
	}
	return out, nil
}

// decodeRead checks and decodes a replica's answer for key.
func decodeRead(key []byte, r *pb.ReadResponse) (kv.ReadResult, error) {
	if !r.GetFound() {
		return kv.ReadResult{}, nil
	}
	e, err := decodeEntry(r.GetEntry())
	if err != nil {
		return kv.ReadResult{}, err
	}
	if string(e.Key) != string(key) {
		return kv.ReadResult{}, fmt.Errorf("asked for key %q, got %q", key, e.Key)
	}
	return kv.ReadResult{Entry: e, Found: true}, nil
}

// ForwardMany implements kv.Peers with a MultiGet, MultiPut or MultiDelete marked as
// forwarded, so the owner coordinates every item itself.
func (c *Client) ForwardMany(ctx context.Context, to chord.Peer, op kv.Op, items []kv.Item, cons kv.Consistency) ([]kv.Result, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, ForwardedHeader, "1")
	out := make([]kv.Result, len(items))
	err := c.call(ctx, to.Addr, "forward batch "+op.String(), func(ctx context.Context, cc *grpc.ClientConn) error {
		client := pb.NewKVClient(cc)
		switch op {
		case kv.OpGet:
			resp, err := client.MultiGet(ctx, &pb.MultiGetRequest{Keys: kv.Keys(items), Consistency: encodeConsistency(cons)})
			if err != nil {
				return err
			}
			return decodeBatchResults(to.Addr, items, resp.GetResults(), out, getFailure, func(r *pb.GetResult, res *kv.Result) error {
				if !r.GetFound() {
					res.Err = fmt.Errorf("%w: %s", kv.ErrNotFound, to.Addr)
					return nil
				}
				v, err := DecodeVersion(r.GetVersion())
				res.Entry.Value, res.Entry.Version = r.GetValue(), v
				return err
			})
		case kv.OpPut:
			kvs := make([]*pb.KeyValue, len(items))
			for i, it := range items {
				kvs[i] = &pb.KeyValue{Key: it.Key, Value: it.Value}
			}
			resp, err := client.MultiPut(ctx, &pb.MultiPutRequest{Items: kvs, Consistency: encodeConsistency(cons)})
			if err != nil {
				return err
			}
			return decodeBatchResults(to.Addr, items, resp.GetResults(), out, itemFailure, decodeWriteResult)
		case kv.OpDelete:
			resp, err := client.MultiDelete(ctx, &pb.MultiDeleteRequest{Keys: kv.Keys(items), Consistency: encodeConsistency(cons)})
			if err != nil {
				return err
			}
			return decodeBatchResults(to.Addr, items, resp.GetResults(), out, itemFailure, func(r *pb.PutResult, res *kv.Result) error {
				res.Entry.Tombstone = true
				return decodeWriteResult(r, res)
			})
		}
		return fmt.Errorf("no batch form of %s", op)
	})
	if err != nil {
		return nil, fromKVStatus(to.Addr, err)
	}
	return out, nil
}

// decodeWriteResult takes the version of a MultiPut or MultiDelete item.
func decodeWriteResult(r *pb.PutResult, res *kv.Result) error {
	v, err := DecodeVersion(r.GetVersion())
	res.Entry.Version = v
	return err
}

// batchResult is a MultiGet or MultiPut item's result.
type batchResult interface {
	GetKey() []byte
	GetError() string
}

// itemFailure is a failed item's error: its message.
func itemFailure[R batchResult](r R) error { return errors.New(r.GetError()) }

// getFailure is itemFailure for MultiGet, whose items left out of a full
// response say so in a flag: those keep ErrResponseFull's type, so that a
// forwarding node flags them again and clients ask for them again.
func getFailure(r *pb.GetResult) error {
	if r.GetResponseFull() {
		return ErrResponseFull
	}
	return itemFailure(r)
}

// decodeBatchResults fills out from a batch response after checking that it
// answers exactly items, in order; an item's error, made by failure, stays
// that item's, behind the answering node's address.
func decodeBatchResults[R batchResult](addr string, items []kv.Item, got []R, out []kv.Result,
	failure func(R) error, decode func(R, *kv.Result) error) error {
	if len(got) != len(items) {
		return fmt.Errorf("%d results for %d items", len(got), len(items))
	}
	for i, r := range got {
		if string(r.GetKey()) != string(items[i].Key) {
			return fmt.Errorf("result %d is for key %q, not %q", i, r.GetKey(), items[i].Key)
		}
		out[i].Entry.Key = items[i].Key
		if r.GetError() != "" {
			out[i].Err = fmt.Errorf("%s: %w", addr, failure(r))
			continue
		}
		if err := decode(r, &out[i]); err != nil {
			return fmt.Errorf("result %d: %w", i, err)
		}
	}
	return nil
}

// Digests implements kv.Peers.
func (c *Client) Digests(ctx context.Context, to chord.Peer, a, b ring.ID, horizon uint64, repair bool) ([]store.BucketDigest, error) {
	var ds []store.BucketDigest
	err := c.call(ctx, to.Addr, "digests", func(ctx context.Context, cc *grpc.ClientConn) error {
		resp, err := pb.NewReplicaClient(cc).Digests(ctx, &pb.DigestsRequest{From: a[:], To: b[:], SettledBefore: horizon, Repair: repair})
		if err != nil {
			return err
		}
		ds, err = decodeDigests(resp.GetDigests())
		return err
	})
	return ds, err
}

// Fetch implements kv.Peers: fn sees each chunk the peer streams, in order.
// An error from fn ends the stream.
func (c *Client) Fetch(ctx context.Context, to chord.Peer, a, b ring.ID, buckets []int, fn func([]store.Entry) error) error {
	return c.fetch(ctx, to, &pb.FetchRequest{From: a[:], To: b[:], Buckets: encodeBuckets(buckets)}, fn)
}

// Versions implements kv.Peers with a Fetch that asks for no values. A peer
// that predates versions_only sends them anyway; they are dropped here, so
// that callers see the same entries from every peer.
func (c *Client) Versions(ctx context.Context, to chord.Peer, a, b ring.ID, buckets []int, fn func([]store.Entry) error) error {
	req := &pb.FetchRequest{From: a[:], To: b[:], Buckets: encodeBuckets(buckets), VersionsOnly: true}
	return c.fetch(ctx, to, req, kv.WithoutValues(fn))
}

func (c *Client) fetch(ctx context.Context, to chord.Peer, req *pb.FetchRequest, fn func([]store.Entry) error) error {
	return c.call(ctx, to.Addr, "fetch", func(ctx context.Context, cc *grpc.ClientConn) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // ends the stream if fn fails
		stream, err := pb.NewReplicaClient(cc).Fetch(ctx, req)
		if err != nil {
			return err
		}
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			batch, err := decodeEntries(resp.GetEntries())
			if err != nil {
				return err
			}
			if err := fn(batch); err != nil {
				return err
			}
		}
	})
}

// GrantLease implements kv.Peers.
func (c *Client) GrantLease(ctx context.Context, to, holder chord.Peer, from, until ring.ID, d time.Duration) error {
	err := c.call(ctx, to.Addr, "grant lease", func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := pb.NewReplicaClient(cc).GrantLease(ctx, &pb.GrantLeaseRequest{
			Holder: holder.Addr, From: from[:], To: until[:], DurationMs: uint32(d.Milliseconds()),
		})
		return err
	})
	return fromLeaseStatus(fromKVStatus(to.Addr, err))
}

// fromLeaseStatus turns a replica's refusal under a read lease
// (FailedPrecondition) back into kv.ErrLeased, keeping the replica's own
// message: that of the status inside err, which the call may have wrapped.
// The replica's address is left to the caller, which names the replica it
// asked (the coordinator's quorum error, a renewal's "grant from").
func fromLeaseStatus(err error) error {
	var se interface{ GRPCStatus() *status.Status }
	if err == nil || !errors.As(err, &se) || se.GRPCStatus().Code() != codes.FailedPrecondition {
		return err
	}
	msg := strings.TrimPrefix(se.GRPCStatus().Message(), kv.ErrLeased.Error()+": ")
	return fmt.Errorf("%w: %s", kv.ErrLeased, msg)
}

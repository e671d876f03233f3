package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

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
	applied := 0
	ch := newChunker(func(batch []*pb.Entry) error {
		return c.call(ctx, to.Addr, "apply", func(ctx context.Context, cc *grpc.ClientConn) error {
			resp, err := pb.NewReplicaClient(cc).Apply(ctx, &pb.ApplyRequest{Entries: batch})
			if err != nil {
				return err
			}
			applied += int(resp.GetApplied())
			return nil
		})
	})
	for _, e := range entries {
		if err := ch.add(encodeEntry(e)); err != nil {
			return applied, err
		}
	}
	return applied, ch.flush()
}

// Read implements kv.Peers.
func (c *Client) Read(ctx context.Context, to chord.Peer, key []byte) (store.Entry, bool, error) {
	var e store.Entry
	var found bool
	err := c.call(ctx, to.Addr, "read", func(ctx context.Context, cc *grpc.ClientConn) error {
		resp, err := pb.NewReplicaClient(cc).Read(ctx, &pb.ReadRequest{Key: key})
		if err != nil {
			return err
		}
		if !resp.GetFound() {
			return nil
		}
		if e, err = decodeEntry(resp.GetEntry()); err != nil {
			return err
		}
		if string(e.Key) != string(key) {
			return fmt.Errorf("asked for key %q, got %q", key, e.Key)
		}
		found = true
		return nil
	})
	if err != nil {
		return store.Entry{}, false, err
	}
	return e, found, nil
}

// Digests implements kv.Peers.
func (c *Client) Digests(ctx context.Context, to chord.Peer, a, b ring.ID) ([]store.BucketDigest, error) {
	var ds []store.BucketDigest
	err := c.call(ctx, to.Addr, "digests", func(ctx context.Context, cc *grpc.ClientConn) error {
		resp, err := pb.NewReplicaClient(cc).Digests(ctx, &pb.DigestsRequest{From: a[:], To: b[:]})
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
	return c.call(ctx, to.Addr, "fetch", func(ctx context.Context, cc *grpc.ClientConn) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // ends the stream if fn fails
		stream, err := pb.NewReplicaClient(cc).Fetch(ctx, &pb.FetchRequest{From: a[:], To: b[:], Buckets: encodeBuckets(buckets)})
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

package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// ForwardedHeader is the gRPC metadata key a node sets on a KV request it
// routes to another node. The receiver coordinates such a request itself
// instead of routing it again, so nodes whose ring views momentarily differ
// cannot bounce a request between them.
const ForwardedHeader = "chordkv-forwarded"

// OwnerHeader is the gRPC response header a node sets on a client KV
// request it did not coordinate itself: the address of the node it forwarded
// the request to. A client routing by a cached ring view takes it as the sign
// that its view is stale. Requests that arrived forwarded never carry it.
const OwnerHeader = "chordkv-owner"

// DefaultKVDeadline bounds a KV request whose caller set no deadline.
const DefaultKVDeadline = 10 * time.Second

// KVNode is what the KV and Replica services need from the replication
// layer; *kv.Node has it.
type KVNode interface {
	Do(ctx context.Context, req kv.Request, forwarded bool) kv.Result
	GetMany(ctx context.Context, keys [][]byte, c kv.Consistency, forwarded bool) []kv.Result
	PutMany(ctx context.Context, items []kv.Item, c kv.Consistency, forwarded bool) []kv.Result
	DeleteMany(ctx context.Context, keys [][]byte, c kv.Consistency, forwarded bool) []kv.Result
	ApplyLocal(entries []store.Entry) (int, error)
	ApplyFrom(coordinator chord.Peer, entries []store.Entry) (int, error)
	GrantLease(holder chord.Peer, from, to ring.ID, d time.Duration) error
	ReadReplica(ctx context.Context, keys [][]byte, storedOnly bool, budget int) ([]kv.ReadResult, error)
	DeclineRepair() error
}

// RangeReader is what the Replica service reads ranges from; *store.Store
// has it.
type RangeReader interface {
	// SettledDigests with horizon 0 is the plain digests.
	SettledDigests(a, b ring.ID, horizon uint64) ([]store.BucketDigest, error)
	BucketEntries(bucket int, a, b ring.ID, fn func(store.Entry) bool) error
}

// Membership tells whether the node is a ring member; *chord.Node has it.
type Membership interface {
	IsMember() bool
}

// KVServer answers the KV (client) and Replica (peer) services for one node.
type KVServer struct {
	pb.UnimplementedKVServer
	pb.UnimplementedReplicaServer

	node   KVNode
	ranges RangeReader
	ring   Membership
}

// NewKVServer builds the KV and Replica services over a node's replication
// layer, its store and its ring membership.
func NewKVServer(node KVNode, ranges RangeReader, ring Membership) *KVServer {
	return &KVServer{node: node, ranges: ranges, ring: ring}
}

// Register adds the KV and Replica services to r.
func (s *KVServer) Register(r grpc.ServiceRegistrar) {
	pb.RegisterKVServer(r, s)
	pb.RegisterReplicaServer(r, s)
}

// clientRequest prepares a KV request: it refuses it while the node is not a
// ring member (before it joined, it would claim every key for itself; after
// it left, it no longer replicates anything), reads the forwarded header and
// bounds the request.
func (s *KVServer) clientRequest(ctx context.Context, c pb.Consistency) (context.Context, context.CancelFunc, kv.Consistency, bool, error) {
	cons, err := decodeConsistency(c)
	if err != nil {
		return nil, nil, 0, false, invalidArgument(err)
	}
	if !s.ring.IsMember() {
		return nil, nil, 0, false, unavailable(ReasonNotMember, errNotMember.Error())
	}
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, DefaultKVDeadline)
	}
	return ctx, cancel, cons, IsForwarded(ctx), nil
}

// IsForwarded says whether the request in ctx was forwarded by another
// node (the ForwardedHeader). It reads the one header rather than copying
// the request's metadata, since every client request asks.
func IsForwarded(ctx context.Context) bool {
	return slices.Contains(metadata.ValueFromIncomingContext(ctx, ForwardedHeader), "1")
}

// setOwnerHeader tells the client, with the OwnerHeader response header, which
// node coordinated its request when it was not this one. It is sent on errors
// too (NotFound is an answer from the owner). SetHeader fails only when there
// is no gRPC stream, as in a direct call, where there is no one to tell.
func setOwnerHeader(ctx context.Context, owner chord.Peer) {
	if owner.Addr == "" {
		return
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(OwnerHeader, owner.Addr))
}

// do runs one client request through the replication layer and tells the
// client, when this node forwarded it, which node coordinated it.
func (s *KVServer) do(ctx context.Context, op kv.Op, key, value []byte, c pb.Consistency) (kv.Result, error) {
	ctx, cancel, cons, fwd, err := s.clientRequest(ctx, c)
	if err != nil {
		return kv.Result{}, err
	}
	defer cancel()
	r := s.node.Do(ctx, kv.Request{Op: op, Key: key, Value: value, Consistency: cons}, fwd)
	setOwnerHeader(ctx, r.Owner)
	return r, kvStatus(r.Err)
}

// Get implements pb.KVServer.
func (s *KVServer) Get(ctx context.Context, req *pb.GetRequest) (*pb.GetResponse, error) {
	r, err := s.do(ctx, kv.OpGet, req.GetKey(), nil, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &pb.GetResponse{Value: r.Entry.Value, Version: EncodeVersion(r.Entry.Version)}, nil
}

// Put implements pb.KVServer.
func (s *KVServer) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	r, err := s.do(ctx, kv.OpPut, req.GetKey(), req.GetValue(), req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &pb.PutResponse{Version: EncodeVersion(r.Entry.Version)}, nil
}

// Delete implements pb.KVServer.
func (s *KVServer) Delete(ctx context.Context, req *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	r, err := s.do(ctx, kv.OpDelete, req.GetKey(), nil, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &pb.DeleteResponse{Version: EncodeVersion(r.Entry.Version)}, nil
}

// Apply implements pb.ReplicaServer. Replica calls are served whether or not
// the node is a member yet: they only merge into or read the local store,
// and last-writer-wins makes a late or repeated Apply harmless.
func (s *KVServer) Apply(_ context.Context, req *pb.ApplyRequest) (*pb.ApplyResponse, error) {
	entries, err := decodeEntries(req.GetEntries())
	if err != nil {
		return nil, invalidArgument(err)
	}
	var n int
	if coordinator := req.GetCoordinator(); coordinator != "" {
		if err := ValidateAddr(coordinator); err != nil {
			return nil, invalidArgument(fmt.Errorf("coordinator: %w", err))
		}
		n, err = s.node.ApplyFrom(chord.NewPeer(coordinator), entries)
	} else {
		n, err = s.node.ApplyLocal(entries)
	}
	if err != nil {
		return nil, kvStatus(err)
	}
	return &pb.ApplyResponse{Applied: uint32(n)}, nil
}

// GrantLease implements pb.ReplicaServer.
func (s *KVServer) GrantLease(_ context.Context, req *pb.GrantLeaseRequest) (*pb.GrantLeaseResponse, error) {
	if err := ValidateAddr(req.GetHolder()); err != nil {
		return nil, invalidArgument(fmt.Errorf("holder: %w", err))
	}
	from, err := DecodeID(req.GetFrom())
	if err != nil {
		return nil, invalidArgument(fmt.Errorf("from: %w", err))
	}
	to, err := DecodeID(req.GetTo())
	if err != nil {
		return nil, invalidArgument(fmt.Errorf("to: %w", err))
	}
	d := time.Duration(req.GetDurationMs()) * time.Millisecond
	if err := s.node.GrantLease(chord.NewPeer(req.GetHolder()), from, to, d); err != nil {
		return nil, kvStatus(err)
	}
	return &pb.GrantLeaseResponse{}, nil
}

// Read implements pb.ReplicaServer.
func (s *KVServer) Read(ctx context.Context, req *pb.ReadRequest) (*pb.ReadResponse, error) {
	if len(req.GetKey()) == 0 {
		return nil, invalidArgument(errors.New("key is empty"))
	}
	got, err := s.node.ReadReplica(ctx, [][]byte{req.GetKey()}, false, 0)
	if err != nil {
		return nil, kvStatus(err)
	}
	if !got[0].Found {
		return &pb.ReadResponse{}, nil
	}
	return &pb.ReadResponse{Found: true, Entry: encodeEntry(got[0].Entry)}, nil
}

// maxReadManyKeys bounds the keys of one ReadMany request. Coordinators
// send at most a client batch (MaxBatchItems) plus a merged replica batch;
// the bound keeps one request from occupying a replica for long.
const maxReadManyKeys = 4 * MaxBatchItems

// ReadMany implements pb.ReplicaServer: the keys' entries in order, as many
// as fit in batchResponseBudget of values (always at least one).
func (s *KVServer) ReadMany(ctx context.Context, req *pb.ReadManyRequest) (*pb.ReadManyResponse, error) {
	keys := req.GetKeys()
	if len(keys) > maxReadManyKeys {
		return nil, invalidArgument(fmt.Errorf("read of %d keys, the limit is %d", len(keys), maxReadManyKeys))
	}
	for i, k := range keys {
		if len(k) == 0 {
			return nil, invalidArgument(fmt.Errorf("key %d is empty", i))
		}
	}
	got, err := s.node.ReadReplica(ctx, keys, req.GetStoredOnly(), batchResponseBudget)
	if err != nil {
		return nil, kvStatus(err)
	}
	results := make([]*pb.ReadResponse, 0, len(keys))
	size := 0
	for _, r := range got {
		if !r.Found {
			results = append(results, &pb.ReadResponse{})
			continue
		}
		if size > 0 && size+len(r.Entry.Value) > batchResponseBudget {
			break
		}
		size += len(r.Entry.Value)
		results = append(results, &pb.ReadResponse{Found: true, Entry: encodeEntry(r.Entry)})
	}
	return &pb.ReadManyResponse{Results: results}, nil
}

// Digests implements pb.ReplicaServer.
func (s *KVServer) Digests(_ context.Context, req *pb.DigestsRequest) (*pb.DigestsResponse, error) {
	a, b, err := decodeRange(req.GetFrom(), req.GetTo())
	if err != nil {
		return nil, invalidArgument(err)
	}
	if req.GetRepair() {
		if err := s.node.DeclineRepair(); err != nil {
			return nil, kvStatus(err)
		}
	}
	ds, err := s.ranges.SettledDigests(a, b, req.GetSettledBefore())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &pb.DigestsResponse{Digests: encodeDigests(ds)}, nil
}

// Fetch implements pb.ReplicaServer: the entries of the requested buckets
// inside (from, to], in chunks of at most fetchChunkEntries entries and about
// fetchChunkBytes bytes, so neither side holds a whole range in memory; with
// versions_only, without their values.
func (s *KVServer) Fetch(req *pb.FetchRequest, stream grpc.ServerStreamingServer[pb.FetchResponse]) error {
	a, b, err := decodeRange(req.GetFrom(), req.GetTo())
	if err != nil {
		return invalidArgument(err)
	}
	buckets, err := decodeBuckets(req.GetBuckets())
	if err != nil {
		return invalidArgument(err)
	}
	ctx := stream.Context()
	ch := newChunker(func(batch []*pb.Entry) error {
		if err := stream.Send(&pb.FetchResponse{Entries: batch}); err != nil {
			return fmt.Errorf("send %d entries: %w", len(batch), err)
		}
		return nil
	})
	for _, bk := range buckets {
		var sendErr error
		err := s.ranges.BucketEntries(bk, a, b, func(e store.Entry) bool {
			if req.GetVersionsOnly() {
				e.Value = nil
			}
			if sendErr = ctx.Err(); sendErr == nil {
				sendErr = ch.add(encodeEntry(e))
			}
			return sendErr == nil
		})
		if sendErr != nil {
			return toStatus(sendErr)
		}
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
	}
	return toStatus(ch.flush())
}

// chunker groups entries into batches of bounded count and size.
type chunker struct {
	send  func([]*pb.Entry) error
	batch []*pb.Entry
	size  int
}

func newChunker(send func([]*pb.Entry) error) *chunker { return &chunker{send: send} }

func (c *chunker) add(e *pb.Entry) error {
	c.batch = append(c.batch, e)
	c.size += proto.Size(e)
	if len(c.batch) >= fetchChunkEntries || c.size >= fetchChunkBytes {
		return c.flush()
	}
	return nil
}

func (c *chunker) flush() error {
	if len(c.batch) == 0 {
		return nil
	}
	err := c.send(c.batch)
	c.batch, c.size = nil, 0
	return err
}

// kvStatus maps a replication-layer error to the status a client acts on:
// NotFound and InvalidArgument are answers (do not retry elsewhere),
// Unavailable and DeadlineExceeded mean "try again or another node".
func kvStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kv.ErrNotFound):
		return status.Error(codes.NotFound, "key not found")
	case errors.Is(err, kv.ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, kv.ErrUnavailable):
		return unavailable(ReasonReplicas, err.Error())
	case errors.Is(err, kv.ErrLeased):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return toStatus(err)
}

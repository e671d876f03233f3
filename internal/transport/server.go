package transport

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/ring"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// Node is what the Chord and Admin services need from the local node;
// *chord.Node satisfies it.
type Node interface {
	Self() chord.Peer
	Neighbors() chord.Neighbors
	Rectify(ctx context.Context, candidate chord.Peer)
	FindSuccessorStep(id ring.ID) chord.Step
	HandleLeave(notice chord.LeaveNotice)
	State() chord.State
	Lookup(ctx context.Context, id ring.ID) (chord.LookupResult, error)
}

// DefaultMaxKeyBytes is the largest key Admin.Lookup accepts unless
// WithMaxKeyBytes says otherwise; it matches the store's default key limit.
const DefaultMaxKeyBytes = 1024

// Server answers the Chord and Admin services for one node.
type Server struct {
	pb.UnimplementedChordServer
	pb.UnimplementedAdminServer

	node        Node
	maxKeyBytes int
	storeStats  func() StoreStats     // nil: nothing reported
	leases      func() kv.LeaseStatus // nil: nothing reported
	synced      func() bool           // nil: nothing reported
}

// ServerOption configures a Server.
type ServerOption func(*Server)

// StoreStats is what Admin.Status reports of the node's store.
type StoreStats struct{ Keys, Tombstones, Bytes int64 }

// WithStoreStats makes Admin.Status report what the node stores.
func WithStoreStats(stats func() StoreStats) ServerOption {
	return func(s *Server) { s.storeStats = stats }
}

// WithLeaseStatus makes Admin.Status report the node's read leases.
func WithLeaseStatus(leases func() kv.LeaseStatus) ServerOption {
	return func(s *Server) { s.leases = leases }
}

// WithSyncStatus makes Admin.Status report whether the node has taken over
// its key ranges (kv.Node.Synced).
func WithSyncStatus(synced func() bool) ServerOption {
	return func(s *Server) { s.synced = synced }
}

// WithMaxKeyBytes sets the largest key Admin.Lookup accepts.
func WithMaxKeyBytes(n int) ServerOption { return func(s *Server) { s.maxKeyBytes = n } }

// NewServer builds the services for node.
func NewServer(node Node, opts ...ServerOption) *Server {
	s := &Server{node: node, maxKeyBytes: DefaultMaxKeyBytes}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Register adds the Chord and Admin services to r.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	pb.RegisterChordServer(r, s)
	pb.RegisterAdminServer(r, s)
}

var errNotMember = errors.New("node is not a ring member (joining or leaving)")

// routingAllowed refuses to route for a node that is not a member. Its state
// is empty or stale, so answering would hand a joining peer a wrong
// successor: two nodes started together, each joining through the other,
// would otherwise form a ring of their own that never learns of the rest.
// Unavailable makes the caller treat the node as not there, which it is not,
// yet.
func (s *Server) routingAllowed() error {
	if !s.node.State().Member {
		return unavailable(ReasonNotMember, errNotMember.Error())
	}
	return nil
}

// Ping implements pb.ChordServer.
func (s *Server) Ping(context.Context, *pb.PingRequest) (*pb.PingResponse, error) {
	return &pb.PingResponse{Self: encodePeer(s.node.Self())}, nil
}

// GetNeighbors implements pb.ChordServer.
func (s *Server) GetNeighbors(context.Context, *pb.GetNeighborsRequest) (*pb.GetNeighborsResponse, error) {
	if err := s.routingAllowed(); err != nil {
		return nil, err
	}
	nb := s.node.Neighbors()
	return &pb.GetNeighborsResponse{
		Predecessor: encodePeer(nb.Predecessor),
		Successors:  encodePeers(nb.Successors),
	}, nil
}

// Notify implements pb.ChordServer.
func (s *Server) Notify(ctx context.Context, req *pb.NotifyRequest) (*pb.NotifyResponse, error) {
	candidate, err := decodeRequiredPeer("candidate", req.GetCandidate())
	if err != nil {
		return nil, invalidArgument(err)
	}
	s.node.Rectify(ctx, candidate)
	return &pb.NotifyResponse{}, nil
}

// FindSuccessorStep implements pb.ChordServer.
func (s *Server) FindSuccessorStep(_ context.Context, req *pb.FindSuccessorStepRequest) (*pb.FindSuccessorStepResponse, error) {
	id, err := DecodeID(req.GetId())
	if err != nil {
		return nil, invalidArgument(err)
	}
	if err := s.routingAllowed(); err != nil {
		return nil, err
	}
	st := s.node.FindSuccessorStep(id)
	return &pb.FindSuccessorStepResponse{
		Done:       st.Done,
		Successors: encodePeers(st.Successors),
		Next:       encodePeers(st.Next),
	}, nil
}

// Leave implements pb.ChordServer.
func (s *Server) Leave(_ context.Context, req *pb.LeaveNotice) (*pb.LeaveResponse, error) {
	notice, err := decodeLeave(req)
	if err != nil {
		return nil, invalidArgument(err)
	}
	s.node.HandleLeave(notice)
	return &pb.LeaveResponse{}, nil
}

// Status implements pb.AdminServer.
func (s *Server) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	st := s.node.State()
	resp := &pb.StatusResponse{
		Id:          st.Self.ID.String(),
		Addr:        st.Self.Addr,
		Predecessor: st.Predecessor.Addr,
		Successors:  chord.Addrs(st.Successors),
		Fingers:     chord.Addrs(st.Fingers),
		Member:      st.Member,
		Ready:       st.Ready,
	}
	if s.storeStats != nil {
		ss := s.storeStats()
		resp.StoredKeys, resp.StoredTombstones, resp.StoredBytes = uint64(max(ss.Keys, 0)), uint64(max(ss.Tombstones, 0)), uint64(max(ss.Bytes, 0))
	}
	if s.synced != nil {
		resp.Synced = s.synced()
	}
	if s.leases != nil {
		ls := s.leases()
		resp.LeasesGranted = uint32(max(ls.Granted, 0))
		resp.ReadLeaseRenewing = ls.Renewing
		if ls.Held {
			resp.ReadLease = &pb.ReadLease{
				From:        ls.From.String(),
				To:          ls.To.String(),
				Grantors:    ls.Grantors,
				RemainingMs: ls.Remaining.Milliseconds(),
			}
		}
	}
	return resp, nil
}

// Lookup implements pb.AdminServer.
func (s *Server) Lookup(ctx context.Context, req *pb.LookupRequest) (*pb.LookupResponse, error) {
	key := req.GetKey()
	if len(key) == 0 {
		return nil, invalidArgument(errors.New("key is empty"))
	}
	if len(key) > s.maxKeyBytes {
		return nil, invalidArgument(fmt.Errorf("key is %d bytes, over the limit of %d", len(key), s.maxKeyBytes))
	}
	if err := s.routingAllowed(); err != nil {
		return nil, err
	}
	id := ring.HashKey(key)
	res, err := s.node.Lookup(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.LookupResponse{
		Owner:  res.Owner.Addr,
		Id:     id.String(),
		Hops:   int32(res.Hops),
		Path:   chord.Addrs(res.Path),
		Failed: int32(res.Failed),
	}, nil
}

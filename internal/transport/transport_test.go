package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/testnet"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// fakeNode records what the services hand it and answers with canned state.
type fakeNode struct {
	self  chord.Peer
	mu    sync.Mutex
	state chord.State
	step  chord.Step
	res   chord.LookupResult
	err   error

	rectified []chord.Peer
	left      []chord.LeaveNotice
	stepIDs   []ring.ID
}

func (f *fakeNode) Self() chord.Peer { return f.self }
func (f *fakeNode) Neighbors() chord.Neighbors {
	f.mu.Lock()
	defer f.mu.Unlock()
	return chord.Neighbors{Predecessor: f.state.Predecessor, Successors: f.state.Successors}
}
func (f *fakeNode) Rectify(_ context.Context, c chord.Peer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rectified = append(f.rectified, c)
}
func (f *fakeNode) FindSuccessorStep(id ring.ID) chord.Step {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stepIDs = append(f.stepIDs, id)
	return f.step
}
func (f *fakeNode) HandleLeave(n chord.LeaveNotice) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.left = append(f.left, n)
}
func (f *fakeNode) State() chord.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}
func (f *fakeNode) Lookup(context.Context, ring.ID) (chord.LookupResult, error) {
	return f.res, f.err
}

// startServer serves node's services on a fresh loopback port and returns
// the address and a stop function.
func startServer(t *testing.T, node Node, lis net.Listener, opts ...ServerOption) (string, func()) {
	t.Helper()
	if lis == nil {
		var err error
		lis, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
	}
	gs := grpc.NewServer()
	NewServer(node, opts...).Register(gs)
	go func() { _ = gs.Serve(lis) }()
	var once sync.Once
	stop := func() { once.Do(gs.Stop) }
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

func peers(addrs ...string) []chord.Peer {
	out := make([]chord.Peer, len(addrs))
	for i, a := range addrs {
		out[i] = chord.NewPeer(a)
	}
	return out
}

func memberNode(addr string) *fakeNode {
	return &fakeNode{
		self: chord.NewPeer(addr),
		state: chord.State{
			Self:        chord.NewPeer(addr),
			Predecessor: chord.NewPeer("10.0.0.1:7000"),
			Successors:  peers("10.0.0.2:7000", "10.0.0.3:7000"),
			Fingers:     peers("10.0.0.2:7000", "10.0.0.4:7000"),
			Member:      true,
			Ready:       true,
		},
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestChordRoundTrip(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	node := memberNode(lis.Addr().String())
	node.step = chord.Step{Next: peers("10.0.0.5:7000", "10.0.0.6:7000")}
	addr, _ := startServer(t, node, lis)
	to := chord.NewPeer(addr)
	c := NewClient()
	defer c.Close()
	ctx := ctxTimeout(t, 5*time.Second)

	if err := c.Ping(ctx, to); err != nil {
		t.Fatalf("ping: %v", err)
	}
	nb, err := c.GetNeighbors(ctx, to)
	if err != nil {
		t.Fatalf("get neighbors: %v", err)
	}
	if nb.Predecessor != node.state.Predecessor || !slices.Equal(nb.Successors, node.state.Successors) {
		t.Errorf("neighbors = %+v, want %+v / %+v", nb, node.state.Predecessor, node.state.Successors)
	}
	cand := chord.NewPeer("10.0.0.9:7000")
	if err := c.Notify(ctx, to, cand); err != nil {
		t.Fatalf("notify: %v", err)
	}
	id := ring.HashKey([]byte("k"))
	st, err := c.FindSuccessorStep(ctx, to, id)
	if err != nil {
		t.Fatalf("find successor step: %v", err)
	}
	if st.Done || !slices.Equal(st.Next, node.step.Next) || st.Successors != nil {
		t.Errorf("step = %+v, want %+v", st, node.step)
	}
	notice := chord.LeaveNotice{Leaving: cand, Successors: peers("10.0.0.2:7000")}
	if err := c.Leave(ctx, to, notice); err != nil {
		t.Fatalf("leave: %v", err)
	}

	node.mu.Lock()
	defer node.mu.Unlock()
	if !slices.Equal(node.rectified, []chord.Peer{cand}) {
		t.Errorf("rectified %v, want %v", node.rectified, cand)
	}
	if !slices.Equal(node.stepIDs, []ring.ID{id}) {
		t.Errorf("step ids %v, want %v", node.stepIDs, id)
	}
	if len(node.left) != 1 || node.left[0].Leaving != cand || !node.left[0].Predecessor.IsZero() ||
		!slices.Equal(node.left[0].Successors, notice.Successors) {
		t.Errorf("leave notices %+v, want %+v", node.left, notice)
	}
}

func adminClient(t *testing.T, addr string) pb.AdminClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return pb.NewAdminClient(cc)
}

func chordClient(t *testing.T, addr string) pb.ChordClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return pb.NewChordClient(cc)
}

func TestAdminRoundTrip(t *testing.T) {
	node := memberNode("10.0.0.0:7000")
	node.res = chord.LookupResult{Owner: chord.NewPeer("10.0.0.3:7000"), Path: peers("10.0.0.0:7000", "10.0.0.3:7000"), Hops: 1, Failed: 2}
	addr, _ := startServer(t, node, nil)
	ac := adminClient(t, addr)
	ctx := ctxTimeout(t, 5*time.Second)

	st, err := ac.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.GetId() != node.self.ID.String() || st.GetAddr() != node.self.Addr || st.GetPredecessor() != "10.0.0.1:7000" ||
		!slices.Equal(st.GetSuccessors(), []string{"10.0.0.2:7000", "10.0.0.3:7000"}) ||
		!slices.Equal(st.GetFingers(), []string{"10.0.0.2:7000", "10.0.0.4:7000"}) || !st.GetMember() || !st.GetReady() {
		t.Errorf("status = %v", st)
	}

	if st.ReadLease != nil || st.GetLeasesGranted() != 0 || st.GetStoredKeys() != 0 {
		t.Errorf("status without store or lease reporters = %v", st)
	}

	lr, err := ac.Lookup(ctx, &pb.LookupRequest{Key: []byte("hello")})
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	if lr.GetOwner() != "10.0.0.3:7000" || lr.GetId() != ring.HashKey([]byte("hello")).String() || lr.GetHops() != 1 ||
		lr.GetFailed() != 2 || !slices.Equal(lr.GetPath(), []string{"10.0.0.0:7000", "10.0.0.3:7000"}) {
		t.Errorf("lookup = %v", lr)
	}
}

func TestInvalidInputIsInvalidArgument(t *testing.T) {
	node := memberNode("10.0.0.0:7000")
	addr, _ := startServer(t, node, nil)
	cc, ac := chordClient(t, addr), adminClient(t, addr)
	good := encodePeer(chord.NewPeer("10.0.0.9:7000"))
	wrongID := ring.HashAddr("elsewhere:1")
	tests := []struct {
		name string
		call func(context.Context) error
	}{
		{"notify without candidate", func(ctx context.Context) error {
			_, err := cc.Notify(ctx, &pb.NotifyRequest{})
			return err
		}},
		{"notify short id", func(ctx context.Context) error {
			_, err := cc.Notify(ctx, &pb.NotifyRequest{Candidate: &pb.Peer{Id: []byte{1, 2}, Addr: "10.0.0.9:7000"}})
			return err
		}},
		{"notify id not hash of addr", func(ctx context.Context) error {
			_, err := cc.Notify(ctx, &pb.NotifyRequest{Candidate: &pb.Peer{Id: wrongID[:], Addr: "10.0.0.9:7000"}})
			return err
		}},
		{"notify empty addr", func(ctx context.Context) error {
			id := ring.HashAddr("")
			_, err := cc.Notify(ctx, &pb.NotifyRequest{Candidate: &pb.Peer{Id: id[:]}})
			return err
		}},
		{"notify addr without port", func(ctx context.Context) error {
			id := ring.HashAddr("10.0.0.9")
			_, err := cc.Notify(ctx, &pb.NotifyRequest{Candidate: &pb.Peer{Id: id[:], Addr: "10.0.0.9"}})
			return err
		}},
		{"find successor step 19-byte id", func(ctx context.Context) error {
			_, err := cc.FindSuccessorStep(ctx, &pb.FindSuccessorStepRequest{Id: make([]byte, 19)})
			return err
		}},
		{"find successor step no id", func(ctx context.Context) error {
			_, err := cc.FindSuccessorStep(ctx, &pb.FindSuccessorStepRequest{})
			return err
		}},
		{"leave without leaving peer", func(ctx context.Context) error {
			_, err := cc.Leave(ctx, &pb.LeaveNotice{Successors: []*pb.Peer{good}})
			return err
		}},
		{"leave with nil successor", func(ctx context.Context) error {
			_, err := cc.Leave(ctx, &pb.LeaveNotice{Leaving: good, Successors: []*pb.Peer{nil}})
			return err
		}},
		{"leave with bad predecessor", func(ctx context.Context) error {
			_, err := cc.Leave(ctx, &pb.LeaveNotice{Leaving: good, Predecessor: &pb.Peer{Addr: "x:1"}})
			return err
		}},
		{"leave with too many successors", func(ctx context.Context) error {
			_, err := cc.Leave(ctx, &pb.LeaveNotice{Leaving: good, Successors: slices.Repeat([]*pb.Peer{good}, maxPeerList+1)})
			return err
		}},
		{"lookup empty key", func(ctx context.Context) error {
			_, err := ac.Lookup(ctx, &pb.LookupRequest{})
			return err
		}},
		{"lookup key over limit", func(ctx context.Context) error {
			_, err := ac.Lookup(ctx, &pb.LookupRequest{Key: make([]byte, DefaultMaxKeyBytes+1)})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(ctxTimeout(t, 5*time.Second))
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			if msg := status.Convert(err).Message(); msg == "" {
				t.Error("empty error message")
			}
		})
	}
	if len(node.rectified)+len(node.left)+len(node.stepIDs) != 0 {
		t.Errorf("invalid input reached the node: %+v", node)
	}
}

func TestNonMemberRefusesToRoute(t *testing.T) {
	node := memberNode("10.0.0.0:7000")
	node.state.Member = false
	addr, _ := startServer(t, node, nil)
	c := NewClient()
	defer c.Close()
	to := chord.NewPeer(addr)
	ctx := ctxTimeout(t, 5*time.Second)
	if err := c.Ping(ctx, to); err != nil {
		t.Fatalf("ping a non-member: %v (it is alive, so ping must answer)", err)
	}
	if _, err := c.GetNeighbors(ctx, to); status.Code(err) != codes.Unavailable {
		t.Errorf("get neighbors: %v, want Unavailable", err)
	}
	if _, err := c.FindSuccessorStep(ctx, to, ring.ID{}); status.Code(err) != codes.Unavailable {
		t.Errorf("find successor step: %v, want Unavailable", err)
	}
}

func TestLookupErrorsMapToCodes(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("lookup: %w", chord.ErrLookupFailed), codes.Unavailable},
		{chord.ErrNoLiveSuccessor, codes.Unavailable},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{fmt.Errorf("hop: %w", status.Error(codes.ResourceExhausted, "busy")), codes.ResourceExhausted},
		{errors.New("boom"), codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			if got := status.Code(toStatus(tt.err)); got != tt.want {
				t.Errorf("toStatus(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	node := memberNode("10.0.0.0:7000")
	node.err = fmt.Errorf("lookup: %w", chord.ErrLookupFailed)
	addr, _ := startServer(t, node, nil)
	_, err := adminClient(t, addr).Lookup(ctxTimeout(t, 5*time.Second), &pb.LookupRequest{Key: []byte("k")})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("lookup with failed route: %v, want Unavailable", err)
	}
}

func TestDeadPeerFailsWithinDeadline(t *testing.T) {
	// A closed port refuses at once; a listener that never speaks HTTP/2
	// holds the call until the deadline.
	closedAddr := testnet.Addr(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()

	c := NewClient()
	defer c.Close()
	const deadline = 300 * time.Millisecond
	for _, addr := range []string{closedAddr, silent.Addr().String()} {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		err := c.Ping(ctx, chord.NewPeer(addr))
		took := time.Since(start)
		cancel()
		if err == nil {
			t.Fatalf("ping %s succeeded", addr)
		}
		if took > deadline+200*time.Millisecond {
			t.Errorf("ping %s took %v, deadline %v", addr, took, deadline)
		}
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			t.Errorf("ping %s: %v, want Unavailable or DeadlineExceeded", addr, err)
		}
	}
}

func TestRestartedPeerIsReachableAtOnce(t *testing.T) {
	// Not a port-0 port: a connection's local end could take it while the
	// peer is down.
	lis, err := net.Listen("tcp", testnet.Addr(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	node := memberNode(addr)
	_, stop := startServer(t, node, lis)
	c := NewClient()
	defer c.Close()
	to := chord.NewPeer(addr)
	if err := c.Ping(ctxTimeout(t, time.Second), to); err != nil {
		t.Fatal(err)
	}
	stop()
	for range 3 {
		if err := c.Ping(ctxTimeout(t, 200*time.Millisecond), to); err == nil {
			t.Fatal("ping of a stopped peer succeeded")
		}
	}
	// What makes the restarted peer reachable at once, rather than after
	// gRPC's reconnect backoff (1 s and growing): the broken connection
	// left the pool, so the next call dials afresh.
	if pooled(c, addr) {
		t.Fatal("after failed pings the pool still holds a connection to the stopped peer; the next call would wait out its reconnect backoff")
	}
	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	startServer(t, node, lis2)
	if err := c.Ping(ctxTimeout(t, 5*time.Second), to); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
	if !pooled(c, addr) {
		t.Error("after the restart the pool holds no connection to the peer")
	}
}

// pooled says whether c's pool holds a connection to addr (it holds at
// most one per address).
func pooled(c *Client, addr string) bool {
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	_, ok := c.pool.conns[addr]
	return ok
}

func TestPoolEvictsLeastRecentlyUsed(t *testing.T) {
	c := NewClient(WithPoolSize(2))
	defer c.Close()
	var addrs []string
	for range 3 {
		addr, _ := startServer(t, memberNode("10.0.0.0:7000"), nil)
		addrs = append(addrs, addr)
	}
	ctx := ctxTimeout(t, 5*time.Second)
	for _, a := range []string{addrs[0], addrs[1], addrs[0], addrs[2]} {
		if err := c.Ping(ctx, chord.NewPeer(a)); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.pool.len(); n != 2 {
		t.Fatalf("pool holds %d connections, want 2", n)
	}
	c.pool.mu.Lock()
	_, has0 := c.pool.conns[addrs[0]]
	_, has1 := c.pool.conns[addrs[1]]
	c.pool.mu.Unlock()
	if !has0 || has1 {
		t.Errorf("pool kept %v / %v, want the least recently used (%s) evicted", has0, has1, addrs[1])
	}
	if err := c.Ping(ctx, chord.NewPeer(addrs[1])); err != nil {
		t.Errorf("ping after eviction: %v", err)
	}
}

func TestClosedClientFails(t *testing.T) {
	c := NewClient()
	c.Close()
	if err := c.Ping(ctxTimeout(t, time.Second), chord.NewPeer("127.0.0.1:1")); !errors.Is(err, errPoolClosed) {
		t.Errorf("ping on closed client: %v, want %v", err, errPoolClosed)
	}
}

// Admin.Status reports what the daemon's reporters say of the store, of
// read leases and of the take-over after a join; a lease not held is absent
// rather than zero.
func TestAdminStatusReportsStoreAndLeases(t *testing.T) {
	from, to := ring.HashKey([]byte("a")), ring.HashKey([]byte("b"))
	tests := []struct {
		name   string
		leases kv.LeaseStatus
		want   *pb.ReadLease
		synced bool
	}{
		{"no lease, taking over", kv.LeaseStatus{Granted: 2}, nil, false},
		{"no lease, renewing", kv.LeaseStatus{Renewing: true}, nil, true},
		{"held", kv.LeaseStatus{Held: true, From: from, To: to, Grantors: []string{"10.0.0.2:7000", "10.0.0.3:7000"}, Remaining: 1500 * time.Millisecond, Granted: 1, Renewing: true},
			&pb.ReadLease{From: from.String(), To: to.String(), Grantors: []string{"10.0.0.2:7000", "10.0.0.3:7000"}, RemainingMs: 1500}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := startServer(t, memberNode("10.0.0.0:7000"), nil,
				WithStoreStats(func() StoreStats { return StoreStats{Keys: 3, Tombstones: 1, Bytes: 40} }),
				WithLeaseStatus(func() kv.LeaseStatus { return tt.leases }),
				WithSyncStatus(func() bool { return tt.synced }))
			st, err := adminClient(t, addr).Status(ctxTimeout(t, 5*time.Second), &pb.StatusRequest{})
			if err != nil {
				t.Fatalf("status: %v", err)
			}
			if st.GetStoredKeys() != 3 || st.GetStoredTombstones() != 1 || st.GetStoredBytes() != 40 {
				t.Errorf("stored = %d keys, %d tombstones, %d bytes; want 3, 1, 40", st.GetStoredKeys(), st.GetStoredTombstones(), st.GetStoredBytes())
			}
			if st.GetLeasesGranted() != uint32(tt.leases.Granted) {
				t.Errorf("leases granted = %d, want %d", st.GetLeasesGranted(), tt.leases.Granted)
			}
			if !proto.Equal(st.GetReadLease(), tt.want) {
				t.Errorf("read lease = %v, want %v", st.GetReadLease(), tt.want)
			}
			if st.GetSynced() != tt.synced {
				t.Errorf("synced = %v, want %v", st.GetSynced(), tt.synced)
			}
			if st.GetReadLeaseRenewing() != tt.leases.Renewing {
				t.Errorf("read lease renewing = %v, want %v", st.GetReadLeaseRenewing(), tt.leases.Renewing)
			}
		})
	}
}

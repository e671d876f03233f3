package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

func TestJoinCandidates(t *testing.T) {
	tests := []struct {
		name             string
		remembered, join []string
		want             []string
	}{
		{"nothing", nil, nil, nil},
		{"skips self", nil, []string{"me:1", "a:1"}, []string{"a:1"}},
		{"remembered first, no duplicates", []string{"b:1", "a:1"}, []string{"a:1", "c:1"}, []string{"b:1", "a:1", "c:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := joinCandidates("me:1", tt.remembered, tt.join); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAdvertiseAddr(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242}
	tests := []struct {
		name    string
		cfg     Config
		want    string
		wantErr bool
	}{
		{"explicit", Config{Addr: "0.0.0.0:7000", Advertise: "node1:7000"}, "node1:7000", false},
		{"defaults to addr", Config{Addr: "127.0.0.1:7000"}, "127.0.0.1:7000", false},
		{"port 0 takes bound port", Config{Addr: "127.0.0.1:0"}, "127.0.0.1:4242", false},
		{"wildcard needs advertise", Config{Addr: "0.0.0.0:7000"}, "", true},
		{"empty host needs advertise", Config{Addr: ":7000"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.advertiseAddr(bound)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %q, %v; want %q, err=%v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestPeersFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if got, err := loadPeers(dir); err != nil || got != nil {
		t.Fatalf("missing file: %v, %v", got, err)
	}
	want := []string{"a:1", "b:2"}
	if err := savePeers(dir, want); err != nil {
		t.Fatal(err)
	}
	if got, err := loadPeers(dir); err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*")); len(m) != 0 {
		t.Errorf("temp files left behind: %v", m)
	}
}

type testNode struct {
	addr string
	dir  string
	stop context.CancelFunc
	done chan error
	once sync.Once
}

func startNode(t *testing.T, join []string, dir string) *testNode {
	t.Helper()
	return startNodeWith(t, join, dir, func(*Config) {})
}

// startNodeWith is startNode with the config adjusted by tweak.
func startNodeWith(t *testing.T, join []string, dir string, tweak func(*Config)) *testNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "data")
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{addr: lis.Addr().String(), dir: dir, stop: cancel, done: make(chan error, 1)}
	cfg := Config{
		Listener: lis, Join: join, DataDir: dir, Successors: 3,
		StabilizeInterval: 50 * time.Millisecond, CallTimeout: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	tweak(&cfg)
	go func() { n.done <- Run(ctx, cfg) }()
	t.Cleanup(func() { n.shutdown(t) })
	return n
}

func (n *testNode) shutdown(t *testing.T) {
	t.Helper()
	n.once.Do(func() {
		n.stop()
		select {
		case err := <-n.done:
			if err != nil {
				t.Errorf("node %s: %v", n.addr, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("node %s did not stop", n.addr)
		}
	})
}

func status(t *testing.T, addr string) (*pb.StatusResponse, healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := pb.NewAdminClient(cc).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return nil, healthpb.HealthCheckResponse_UNKNOWN
	}
	h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return st, healthpb.HealthCheckResponse_UNKNOWN
	}
	return st, h.GetStatus()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestThreeNodesFormARingAndOneLeaves(t *testing.T) {
	a := startNode(t, nil, "")
	b := startNode(t, []string{a.addr}, "")
	c := startNode(t, []string{a.addr, b.addr}, "")
	all := []string{a.addr, b.addr, c.addr}

	waitFor(t, "three ready nodes, each with the two others as successors", func() bool {
		for _, addr := range all {
			st, h := status(t, addr)
			if st == nil || !st.GetReady() || h != healthpb.HealthCheckResponse_SERVING || len(st.GetSuccessors()) != 2 {
				return false
			}
		}
		return true
	})
	waitFor(t, "peers.json on every node", func() bool {
		for _, n := range []*testNode{a, b, c} {
			if p, err := loadPeers(n.dir); err != nil || len(p) != 2 {
				return false
			}
		}
		return true
	})

	c.shutdown(t)
	waitFor(t, "the two remaining nodes to splice the leaver out", func() bool {
		for _, addr := range []string{a.addr, b.addr} {
			st, _ := status(t, addr)
			if st == nil || slices.Contains(st.GetSuccessors(), c.addr) || st.GetPredecessor() == c.addr {
				return false
			}
		}
		return true
	})
}

func TestRestartedNodeRejoinsFromRememberedPeers(t *testing.T) {
	a := startNode(t, nil, "")
	b := startNode(t, []string{a.addr}, "")
	waitFor(t, "b to remember a", func() bool {
		p, _ := loadPeers(b.dir)
		return slices.Equal(p, []string{a.addr})
	})
	b.shutdown(t)
	// Restart b with no --join: it must find a through peers.json rather
	// than create a ring of its own.
	b2 := startNode(t, nil, b.dir)
	waitFor(t, "a and the new b to see each other", func() bool {
		sa, _ := status(t, a.addr)
		sb, _ := status(t, b2.addr)
		return sa != nil && sb != nil && slices.Contains(sa.GetSuccessors(), b2.addr) && slices.Contains(sb.GetSuccessors(), a.addr)
	})
}

func TestReplicasMustFitTheSuccessorList(t *testing.T) {
	err := Run(context.Background(), Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Successors: 3, Replicas: 5,
		Logger: slog.New(slog.DiscardHandler),
	})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "--replicas 5") {
		t.Fatalf("Run = %v, want an invalid config naming --replicas", err)
	}
}

// A node keeps at least r successors: a lookup takes a key's replicas from
// the list of the owner's predecessor, which starts at the owner, so with
// --successors r-1 (allowed) it would name one replica too few.
func TestSuccessorListHoldsAReplicaSet(t *testing.T) {
	tests := []struct{ successors, replicas, want int }{
		{8, 3, 8},
		{3, 3, 3},
		{2, 3, 3},
		{4, 5, 5},
		{1, 1, 1},
	}
	for _, tt := range tests {
		if got := successorListLength(tt.successors, tt.replicas); got != tt.want {
			t.Errorf("--successors %d --replicas %d: keeps %d, want %d", tt.successors, tt.replicas, got, tt.want)
		}
	}

	// Five nodes started with --successors 2 --replicas 3 list 3.
	two := func(c *Config) { c.Successors, c.Replicas = 2, 3 }
	first := startNodeWith(t, nil, "", two)
	nodes := []*testNode{first}
	for range 4 {
		nodes = append(nodes, startNodeWith(t, []string{first.addr}, "", two))
	}
	waitFor(t, "every node lists 3 successors", func() bool {
		for _, n := range nodes {
			if st, _ := status(t, n.addr); st == nil || len(st.GetSuccessors()) != 3 {
				return false
			}
		}
		return true
	})
}

// TestKeysSurviveAGracefulStop writes through one node, reads through
// another, then stops the owner of most keys' ranges with a graceful
// shutdown: its hand-off must leave every key readable at consistency all
// from the two remaining nodes.
func TestKeysSurviveAGracefulStop(t *testing.T) {
	a := startNode(t, nil, "")
	b := startNode(t, []string{a.addr}, "")
	c := startNode(t, []string{a.addr, b.addr}, "")
	waitFor(t, "three serving nodes", func() bool {
		for _, n := range []*testNode{a, b, c} {
			if st, h := status(t, n.addr); st == nil || len(st.GetSuccessors()) != 2 || h != healthpb.HealthCheckResponse_SERVING {
				return false
			}
		}
		return true
	})
	kvc := func(addr string) pb.KVClient {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return pb.NewKVClient(cc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const keys = 60
	for i := range keys {
		k := fmt.Appendf(nil, "key-%d", i)
		if _, err := kvc(a.addr).Put(ctx, &pb.PutRequest{Key: k, Value: k}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	if _, err := kvc(b.addr).Put(ctx, &pb.PutRequest{Key: make([]byte, 1025)}); !strings.Contains(fmt.Sprint(err), "--max-key-bytes") {
		t.Errorf("oversized key: %v", err)
	}
	c.shutdown(t)
	// Reads at "all" count the replicas a node knows of: wait until the two
	// left have dropped c from their successor lists, which the leave
	// notice normally does at once. Under -race on a loaded machine CI once
	// read in the moment before, and a read then waits for c.
	waitFor(t, "a and b without c", func() bool {
		for _, n := range []*testNode{a, b} {
			st, _ := status(t, n.addr)
			if st == nil || slices.Contains(st.GetSuccessors(), c.addr) {
				return false
			}
		}
		return true
	})
	for i := range keys {
		k := fmt.Appendf(nil, "key-%d", i)
		for _, n := range []*testNode{a, b} {
			resp, err := kvc(n.addr).Get(ctx, &pb.GetRequest{Key: k, Consistency: pb.Consistency_CONSISTENCY_ALL})
			if err != nil || string(resp.GetValue()) != string(k) {
				t.Fatalf("get %s via %s after a graceful stop: %q, %v", k, n.addr, resp.GetValue(), err)
			}
		}
	}
}

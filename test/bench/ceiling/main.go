// Command ceiling is measurement tooling, not product: a bare gRPC unary
// server for the chordkv.v1.KV service that answers Get and Put from an
// in-memory map. It shows what gRPC itself costs on this machine, so that
// `chordkv bench` numbers against a real node can be read as a fraction of
// that ceiling. It serves the same generated service, so `chordkv bench`
// drives it unchanged:
//
//	go run ./test/bench/ceiling --addr 127.0.0.1:7999
//	chordkv bench --endpoints 127.0.0.1:7999 --op get
//
// Delete is not implemented (Unimplemented); there is no replication, no
// routing and no disk.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// mapKV is the whole "store": one map behind one lock.
type mapKV struct {
	pb.UnimplementedKVServer
	mu  sync.RWMutex
	m   map[string][]byte
	hlc atomic.Uint64
}

// nodeID stands in for a node's 20-byte ID in the versions Put returns,
// so replies are as large as a node's and `chordkv put` accepts them.
var nodeID = make([]byte, 20)

func (s *mapKV) Get(_ context.Context, req *pb.GetRequest) (*pb.GetResponse, error) {
	s.mu.RLock()
	v, ok := s.m[string(req.GetKey())]
	s.mu.RUnlock()
	if !ok {
		return nil, status.Error(codes.NotFound, "not found")
	}
	return &pb.GetResponse{Value: v}, nil
}

func (s *mapKV) Put(_ context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	// The request message is ours once decoded, so its value is kept as is.
	s.mu.Lock()
	s.m[string(req.GetKey())] = req.GetValue()
	s.mu.Unlock()
	return &pb.PutResponse{Version: &pb.Version{Hlc: s.hlc.Add(1), Node: nodeID}}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:7999", "host:port to listen on")
	flag.Parse()
	if err := run(*addr); err != nil {
		log.Fatalf("ceiling: %v", err)
	}
}

func run(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := grpc.NewServer()
	pb.RegisterKVServer(srv, &mapKV{m: make(map[string][]byte)})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Stop() // measurement tooling: no need to drain
	}()
	fmt.Fprintf(os.Stderr, "ceiling: serving chordkv.v1.KV (Get, Put) on %s\n", lis.Addr())
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

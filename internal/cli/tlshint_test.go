package cli

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chordkv/chordkv/internal/transport"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// nodeUnavailable is an Unavailable status as a chordkv node answers it,
// marked with transport.ErrorDomain.
func nodeUnavailable(t *testing.T, msg string) error {
	t.Helper()
	s, err := status.New(codes.Unavailable, msg).WithDetails(&errdetails.ErrorInfo{Domain: transport.ErrorDomain, Reason: transport.ReasonReplicas})
	if err != nil {
		t.Fatal(err)
	}
	return s.Err()
}

// The TLS hint explains gRPC's Unavailable for a call that reached no node,
// and never a node's own answer: after a crash or a restart, "too few
// replicas" (a read lease running out) must not read like a TLS problem.
func TestTLSHint(t *testing.T) {
	nodeSaid := func(msg string) error { return nodeUnavailable(t, msg) }
	tests := []struct {
		name  string
		err   error
		tlsOn bool
		want  string // a part of the hint; "" for none
	}{
		{"connection refused", status.Error(codes.Unavailable, "connection error: dial tcp: connect: connection refused"), false, ""},
		{"handshake", status.Error(codes.Unavailable, "connection error: tls: first record does not look like a TLS handshake"), true, "TLS handshake failed"},
		{"reset with TLS on", status.Error(codes.Unavailable, "error reading from server: EOF"), true, "refused this client's certificate"},
		{"reset with TLS off", status.Error(codes.Unavailable, "error reading from server: EOF"), false, "if the node serves TLS"},
		{"the node's own unavailable", nodeSaid("put: 0 of the 2 replicas required answered: range leased to another node"), false, ""},
		{"the node's own unavailable, TLS on", nodeSaid("not a ring member"), true, ""},
		{"not found", status.Error(codes.NotFound, "key not found"), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tlsHint(tt.err, tt.tlsOn)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("tlsHint(%v, %v) = %q, want one saying %q", tt.err, tt.tlsOn, got, tt.want)
			}
		})
	}
}

// refusingKV answers every Put with a node's own Unavailable, as a ring
// does while too few of a key's replicas take writes.
type refusingKV struct {
	pb.UnimplementedKVServer
	err error
}

func (r refusingKV) Put(context.Context, *pb.PutRequest) (*pb.PutResponse, error) { return nil, r.err }

// When every endpoint answered that it could not serve the call, the CLI
// says so, rather than that none answered, and gives no TLS hint; exit 4
// either way.
func TestUnavailableSaysWhetherTheEndpointsAnswered(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterKVServer(srv, refusingKV{err: nodeUnavailable(t, "put: 0 of the 2 replicas required answered")})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	dead := deadAddr(t)

	tests := []struct {
		name, endpoints, want string
	}{
		{"the node refused", lis.Addr().String(), "no endpoint could serve the request now"},
		{"nothing listening", dead, "no endpoint answered within"},
		{"one refused, one not listening", lis.Addr().String() + "," + dead, "no endpoint answered within"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI("put", "k", "v", "--endpoints", tt.endpoints, "--timeout", "2s")
			if r.code != ExitUnavailable || !strings.Contains(r.stderr, tt.want) || strings.Contains(r.stderr, "--tls-") {
				t.Errorf("exit %d, stderr %q: want exit %d saying %q, without a TLS hint", r.code, r.stderr, ExitUnavailable, tt.want)
			}
		})
	}
}

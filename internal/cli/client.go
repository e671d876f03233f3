package cli

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/chordkv/chordkv/internal/transport"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// nodeError is a failed call to one node. It names the node's address, as
// operators need to know which endpoint is dead, and keeps the gRPC status
// underneath for exitCode.
type nodeError struct {
	addr string
	err  error
	hint string // appended to the message, e.g. about TLS
}

func (e *nodeError) Error() string {
	if s, ok := status.FromError(e.err); ok {
		return fmt.Sprintf("%s: %s (%s)%s", e.addr, s.Message(), s.Code(), e.hint)
	}
	return fmt.Sprintf("%s: %v%s", e.addr, e.err, e.hint)
}

func (e *nodeError) Unwrap() error { return e.err }

// callNode runs one Admin call against addr with the --timeout deadline.
func callNode[T any](ctx context.Context, opts *clientOptions, addr string, call func(context.Context, pb.AdminClient) (T, error)) (T, error) {
	return dialAndCall(ctx, opts, addr, pb.NewAdminClient, call)
}

// dialAndCall connects to addr, builds the service client with newClient
// and runs one call with the --timeout deadline. Messages may be as large
// as maxClientMessageBytes both ways, so a node's value limit, not the
// client, decides how large a value may be.
func dialAndCall[C, T any](ctx context.Context, opts *clientOptions, addr string, newClient func(grpc.ClientConnInterface) C, call func(context.Context, C) (T, error)) (T, error) {
	var zero T
	cc, err := dial(opts, addr)
	if err != nil {
		return zero, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	res, err := call(ctx, newClient(cc))
	if err != nil {
		return zero, &nodeError{addr: addr, err: err, hint: tlsHint(err, opts.tls.Enabled())}
	}
	return res, nil
}

// dial opens a client connection to addr the way every client command
// does: the --tls-* credentials, the transport's dial options and
// maxClientMessageBytes. The connection is lazy; errors from the node show
// up on the first call.
func dial(opts *clientOptions, addr string) (*grpc.ClientConn, error) {
	if err := transport.ValidateAddr(addr); err != nil {
		return nil, usageErrorf("endpoint: %v", err)
	}
	cc, err := grpc.NewClient(addr, dialOptions(opts)...)
	if err != nil {
		return nil, &nodeError{addr: addr, err: err}
	}
	return cc, nil
}

// dialOptions are every client connection's options: the --tls-*
// credentials, the transport's dial options and maxClientMessageBytes.
func dialOptions(opts *clientOptions) []grpc.DialOption {
	creds := opts.creds
	if creds == nil {
		creds = insecure.NewCredentials() // a command built outside newRootCmd skips validate
	}
	return append(transport.DialOptions(creds), transport.MessageSizeOptions(maxClientMessageBytes))
}

// maxClientMessageBytes bounds what the CLI sends or accepts in one
// message: far above any sensible --max-value-bytes, below what would
// exhaust a small machine.
const maxClientMessageBytes = 256 << 20

// isUnreachable reports whether err means "try another node": the node is
// down, slow, or not (yet) a ring member.
func isUnreachable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// withFailover runs an Admin call against each endpoint in turn until one
// answers; see failover.
func withFailover[T any](ctx context.Context, opts *clientOptions, call func(context.Context, pb.AdminClient) (T, error)) (T, error) {
	return failover(ctx, opts, pb.NewAdminClient, call)
}

// failover runs call against each endpoint in turn until one answers.
// Any answer, including a refusal such as InvalidArgument or NotFound, ends
// the search; only unreachable endpoints are skipped. When none answers,
// the error names every endpoint and exits with ExitUnavailable.
func failover[C, T any](ctx context.Context, opts *clientOptions, newClient func(grpc.ClientConnInterface) C, call func(context.Context, C) (T, error)) (T, error) {
	var zero T
	var failures []string
	answered := 0 // endpoints that said themselves they could not serve the call
	for _, addr := range opts.endpoints {
		res, err := dialAndCall(ctx, opts, addr, newClient, call)
		if err == nil {
			return res, nil
		}
		if !isUnreachable(err) {
			return zero, err
		}
		if transport.NodeAnswered(err) {
			answered++
		}
		failures = append(failures, err.Error())
	}
	if len(failures) == 0 {
		return zero, usageErrorf("no endpoints given (--endpoints or CHORDKV_ENDPOINTS)")
	}
	if answered == len(failures) {
		return zero, withExitCode(ExitUnavailable, fmt.Errorf("no endpoint could serve the request now: %s", strings.Join(failures, "; ")))
	}
	return zero, withExitCode(ExitUnavailable, fmt.Errorf("no endpoint answered within %v: %s", opts.timeout, strings.Join(failures, "; ")))
}

func getStatus(ctx context.Context, c pb.AdminClient) (*pb.StatusResponse, error) {
	return c.Status(ctx, &pb.StatusRequest{})
}

// tlsHint explains a failed TLS handshake, which gRPC reports as a bare
// Unavailable that reads like a dead node. tlsOn says whether this client
// used TLS at all. Under TLS 1.3 a server rejects a client certificate only
// after the client's side of the handshake is done, so the client may see
// nothing but a reset connection: any failure short of "connection
// refused" gets the hint, unless the node answered itself: an Unavailable
// it decided on (no quorum, not a ring member yet) says so in its status.
func tlsHint(err error, tlsOn bool) string {
	if status.Code(err) != codes.Unavailable || transport.NodeAnswered(err) {
		return ""
	}
	msg := status.Convert(err).Message()
	const check = "check --tls-ca, --tls-cert and --tls-key against the node's certificates"
	switch {
	case strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:") || strings.Contains(msg, "handshake"):
		return "; TLS handshake failed: " + check
	case strings.Contains(msg, "connection refused"):
		return ""
	case tlsOn:
		return "; the node may have refused this client's certificate: " + check
	}
	return "; if the node serves TLS, pass --tls-ca (and --tls-cert and --tls-key when it requires client certificates)"
}

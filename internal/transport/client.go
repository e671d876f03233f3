package transport

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// Defaults for NewClient.
const (
	DefaultPoolSize = 256
	// DefaultCallTimeout bounds a call whose context has no deadline, so no
	// RPC ever waits forever. chord always passes a deadline of its own.
	DefaultCallTimeout = 5 * time.Second
)

// Client implements chord.Transport over gRPC with one pooled connection per
// peer address.
type Client struct {
	pool        *pool
	callTimeout time.Duration
}

var _ chord.Transport = (*Client)(nil)

type clientOptions struct {
	poolSize    int
	callTimeout time.Duration
	creds       credentials.TransportCredentials
	dialOpts    []grpc.DialOption
}

// ClientOption configures a Client.
type ClientOption func(*clientOptions)

// WithPoolSize bounds how many peer connections are kept open.
func WithPoolSize(n int) ClientOption { return func(o *clientOptions) { o.poolSize = n } }

// WithTransportCredentials secures peer connections, e.g. with TLS. The
// default is plain text.
func WithTransportCredentials(c credentials.TransportCredentials) ClientOption {
	return func(o *clientOptions) { o.creds = c }
}

// WithDefaultCallTimeout bounds calls whose context has no deadline.
func WithDefaultCallTimeout(d time.Duration) ClientOption {
	return func(o *clientOptions) { o.callTimeout = d }
}

// WithDialOptions adds gRPC dial options, applied after the defaults.
func WithDialOptions(opts ...grpc.DialOption) ClientOption {
	return func(o *clientOptions) { o.dialOpts = append(o.dialOpts, opts...) }
}

// NewClient builds a Client. Connections are made lazily, on first use.
func NewClient(opts ...ClientOption) *Client {
	o := clientOptions{poolSize: DefaultPoolSize, callTimeout: DefaultCallTimeout, creds: insecure.NewCredentials()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.poolSize < 1 {
		o.poolSize = 1
	}
	dialOpts := append(DialOptions(o.creds), o.dialOpts...)
	dial := func(addr string) (*grpc.ClientConn, error) { return grpc.NewClient(addr, dialOpts...) }
	return &Client{pool: newPool(o.poolSize, dial), callTimeout: o.callTimeout}
}

// DialOptions are the options every chordkv connection uses: the given
// credentials, fixed flow-control windows (see StreamWindowBytes) and a
// short reconnect backoff. Peers restart in seconds, and gRPC's default
// backoff (up to two minutes) would keep a restarted peer unreachable long
// after it is back.
func DialOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(StreamWindowBytes),
		grpc.WithInitialConnWindowSize(ConnWindowBytes),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  50 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   time.Second,
			},
			MinConnectTimeout: time.Second,
		}),
	}
}

// HTTP/2 flow-control windows of every chordkv connection, both ways.
//
// Fixed windows turn off gRPC's bandwidth-delay estimator. Left on, it
// answers data arriving on a quiet connection with a PING, and the peer
// with a PING ack: two more socket writes and reads, and often two more
// thread wake-ups, for a request of a hundred bytes. Under 64 writers on a
// 3-node ring that was a third of all socket calls (docs/benchmarks.md,
// "seventeenth session"). The estimator only ever grows windows, for links
// whose bandwidth times round trip exceeds gRPC's 64 KiB start; windows
// fixed far above that start keep that headroom without the pings, as
// CockroachDB does. The price is memory: a peer may send up to a window
// that this side has not yet read, so at most ConnWindowBytes per
// connection waits in buffers when a node falls behind.
const (
	// StreamWindowBytes is what one call may have in flight unread: 1 MiB,
	// which at a LAN round trip of 0.5 ms still lets one call carry 2 GB/s.
	StreamWindowBytes = 1 << 20
	// ConnWindowBytes is what all calls on one connection may have in
	// flight unread: enough for eight calls at their full window.
	ConnWindowBytes = 8 << 20
)

// ServerOptions are the options every chordkv server uses along with its
// credentials: the same fixed flow-control windows as DialOptions.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(StreamWindowBytes),
		grpc.InitialConnWindowSize(ConnWindowBytes),
	}
}

// Close closes every pooled connection. Calls in flight finish first.
func (c *Client) Close() error {
	c.pool.close()
	return nil
}

// call runs one RPC against addr with a deadline, and drops the connection
// when the peer was unavailable so the next call redials at once.
func (c *Client) call(ctx context.Context, addr, method string, rpc func(context.Context, *grpc.ClientConn) error) error {
	if err := ValidateAddr(addr); err != nil {
		return fmt.Errorf("%s %s: %w", method, addr, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.callTimeout)
		defer cancel()
	}
	pc, err := c.pool.acquire(addr)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, addr, err)
	}
	defer c.pool.release(pc)
	if err := rpc(ctx, pc.cc); err != nil {
		// A node refusing to route also answers Unavailable, over a
		// healthy connection; only a broken connection is worth redialling.
		if status.Code(err) == codes.Unavailable && pc.cc.GetState() != connectivity.Ready {
			c.pool.drop(pc)
		}
		return fmt.Errorf("%s %s: %w", method, addr, err)
	}
	return nil
}

// Ping implements chord.Transport.
func (c *Client) Ping(ctx context.Context, to chord.Peer) error {
	return c.call(ctx, to.Addr, "ping", func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := pb.NewChordClient(cc).Ping(ctx, &pb.PingRequest{})
		return err
	})
}

// GetNeighbors implements chord.Transport.
func (c *Client) GetNeighbors(ctx context.Context, to chord.Peer) (chord.Neighbors, error) {
	var nb chord.Neighbors
	err := c.call(ctx, to.Addr, "get neighbors", func(ctx context.Context, cc *grpc.ClientConn) error {
		resp, err := pb.NewChordClient(cc).GetNeighbors(ctx, &pb.GetNeighborsRequest{})
		if err != nil {
			return err
		}
		nb, err = decodeNeighbors(resp)
		return err
	})
	return nb, err
}

// Notify implements chord.Transport.
func (c *Client) Notify(ctx context.Context, to chord.Peer, candidate chord.Peer) error {
	return c.call(ctx, to.Addr, "notify", func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := pb.NewChordClient(cc).Notify(ctx, &pb.NotifyRequest{Candidate: encodePeer(candidate)})
		return err
	})
}

// FindSuccessorStep implements chord.Transport.
func (c *Client) FindSuccessorStep(ctx context.Context, to chord.Peer, id ring.ID) (chord.Step, error) {
	var st chord.Step
	err := c.call(ctx, to.Addr, "find successor step", func(ctx context.Context, cc *grpc.ClientConn) error {
		resp, err := pb.NewChordClient(cc).FindSuccessorStep(ctx, &pb.FindSuccessorStepRequest{Id: id[:]})
		if err != nil {
			return err
		}
		st, err = decodeStep(resp)
		return err
	})
	return st, err
}

// Leave implements chord.Transport.
func (c *Client) Leave(ctx context.Context, to chord.Peer, notice chord.LeaveNotice) error {
	return c.call(ctx, to.Addr, "leave", func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := pb.NewChordClient(cc).Leave(ctx, encodeLeave(notice))
		return err
	})
}

package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/chordkv/chordkv/internal/transport"
)

// Config is what a daemon needs from its operator. Zero durations and counts
// take chord.LoopbackConfig's values.
type Config struct {
	// Addr is the host:port to listen on.
	Addr string
	// Advertise is the host:port peers dial and the node's ID is hashed
	// from. It defaults to Addr, or to the bound address when Addr's port is
	// 0. It must stay the same across restarts for the node to keep its ID.
	Advertise string
	// Join lists members to join through. Empty means "create a ring unless
	// a peer remembered from the last run answers". When Join is set, only
	// the node advertising Join[0] may create a ring, and only after no other
	// address answered: so nodes started together with the same list form
	// one ring.
	Join []string
	// DataDir holds peers.json and the store (under data/); it is created
	// if missing.
	DataDir string
	// Successors is the successor-list length.
	Successors int
	// Replicas is r, the copies kept of every key: the owner and its next
	// r-1 successors, so it may not exceed Successors+1. Zero means
	// kv.DefaultConfig's.
	Replicas int
	// MaxKeyBytes and MaxValueBytes bound client requests; zero means
	// kv.DefaultConfig's (1 KiB, 1 MiB).
	MaxKeyBytes   int
	MaxValueBytes int
	// CacheBytes is the storage engine's block cache; zero means
	// store.DefaultCacheBytes (64 MiB). It fills only as keys are read and
	// written.
	CacheBytes int64
	// WALMinSyncInterval spaces the storage engine's log fsyncs at least
	// this far apart, so that the writes arriving meanwhile share one; zero
	// syncs as soon as asked. The daemon's --wal-min-sync-interval defaults
	// to store.DefaultWALMinSyncInterval; see store.Options for the
	// trade-off.
	WALMinSyncInterval time.Duration
	// AntiEntropyInterval is how often the node compares its primary range
	// with its replicas; zero means kv.DefaultConfig's.
	AntiEntropyInterval time.Duration
	// ReadLease, when above 0, lets the node answer quorum reads of its
	// range alone while its replicas grant it a lease this long; zero
	// leaves leases off. The daemon's --read-lease defaults to
	// kv.DefaultConfig's (1s); see kv.Config.ReadLease for the trade-off.
	ReadLease time.Duration
	// ReadLeaseIdle lets a lease no quorum read wanted for this long lapse,
	// until the next read; zero renews it always. The daemon's
	// --read-lease-idle defaults to kv.DefaultConfig's (10s); see
	// kv.Config.ReadLeaseIdle for the trade-off.
	ReadLeaseIdle time.Duration
	// TombstoneGrace is how long deletes are remembered; zero means
	// kv.DefaultConfig's (24h).
	TombstoneGrace time.Duration
	// HandOffTimeout bounds the range hand-off on a graceful stop, before
	// the node leaves the ring. Default 5s, so that hand-off, leave and a
	// graceful stop fit the 10s a container runtime waits after SIGTERM.
	HandOffTimeout time.Duration
	// StabilizeInterval is how often the node stabilizes.
	StabilizeInterval time.Duration
	// CallTimeout bounds every remote call the node makes.
	CallTimeout time.Duration
	// ShutdownTimeout bounds how long in-flight RPCs may finish after the
	// node left the ring; then the server stops hard. Default 5s.
	ShutdownTimeout time.Duration
	// TLS, when any file is set, serves gRPC over TLS and makes the node's
	// own calls to peers over TLS with the same certificate; with a CA,
	// callers must present a certificate it signed (mutual TLS). Zero means
	// plain text. Files are read once, at start: there is no reload.
	TLS transport.TLSFiles
	// Listener, if set, is served instead of listening on Addr (tests).
	Listener net.Listener
	// MetricsAddr is the host:port serving Prometheus metrics on /metrics.
	// Empty turns metrics off (no instrumentation either).
	MetricsAddr string
	// MetricsListener, if set, serves metrics instead of listening on
	// MetricsAddr (tests).
	MetricsListener net.Listener
	// Pprof also serves net/http/pprof under /debug/pprof/ on the metrics
	// address. Profiles expose internals and cost CPU while taken, so it is
	// off by default and needs metrics on.
	Pprof bool
	// StreamWorkers is how many long-lived goroutines serve incoming RPCs
	// (grpc.NumStreamWorkers); an RPC arriving while all are busy gets a
	// new goroutine, as without workers. A worker keeps the stack it grew
	// serving earlier RPCs, where a fresh goroutine grows (copies) its stack
	// again on every RPC: that copying was 13-15% of a node's CPU under a
	// put load of 64 concurrent callers. The cost is the workers' idle
	// stacks, a few KiB each. Zero means defaultStreamWorkers; negative
	// turns workers off.
	StreamWorkers int
	// Version labels chordkv_node_info.
	Version string
	// Logger receives the daemon's and the node's logs. Nil means
	// slog.Default().
	Logger *slog.Logger
}

const (
	defaultShutdownTimeout = 5 * time.Second
	defaultHandOffTimeout  = 5 * time.Second
)

// ErrInvalidConfig marks errors caused by the operator's settings rather
// than by the environment, so the CLI can report them as usage errors.
var ErrInvalidConfig = errors.New("invalid config")

func (c Config) validate() error {
	if err := c.check(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (c Config) check() error {
	if c.Listener == nil {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return fmt.Errorf("listen address %q: %w", c.Addr, err)
		}
	}
	if c.Advertise != "" {
		if err := transport.ValidateAddr(c.Advertise); err != nil {
			return fmt.Errorf("advertise address: %w", err)
		}
	}
	for _, a := range c.Join {
		if err := transport.ValidateAddr(a); err != nil {
			return fmt.Errorf("join address: %w", err)
		}
	}
	if c.DataDir == "" {
		return errors.New("data dir is required")
	}
	if c.MetricsAddr != "" && c.MetricsListener == nil {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("metrics address %q: %w", c.MetricsAddr, err)
		}
	}
	if c.Pprof && !c.metricsOn() {
		return errors.New("--pprof is served on the metrics address: set --metrics-addr too")
	}
	if c.Successors < 0 || c.StabilizeInterval < 0 || c.CallTimeout < 0 || c.ShutdownTimeout < 0 {
		return errors.New("successors and durations must not be negative")
	}
	if c.Replicas < 0 || c.MaxKeyBytes < 0 || c.MaxValueBytes < 0 || c.CacheBytes < 0 || c.WALMinSyncInterval < 0 || c.AntiEntropyInterval < 0 ||
		c.ReadLease < 0 || c.ReadLeaseIdle < 0 || c.TombstoneGrace < 0 || c.HandOffTimeout < 0 {
		return errors.New("replicas, size limits and durations must not be negative")
	}
	return nil
}

// checkReplicas refuses a replication factor the successor list cannot
// carry: a key's replicas are its owner and the owner's next r-1
// successors, so a node must know that many successors.
func checkReplicas(replicas, successors int) error {
	if replicas > successors+1 {
		return fmt.Errorf("%w: --replicas %d needs --successors of at least %d (it is %d): a key's replicas are its owner and the owner's successors",
			ErrInvalidConfig, replicas, replicas-1, successors)
	}
	return nil
}

// successorListLength is how many successors a node keeps: the list asked
// for, and at least r. A node's own replicas are itself and r-1 successors,
// but a lookup answers with the list of the owner's predecessor, which
// starts at the owner: with r-1 entries it would name r-1 replicas, and a
// node coordinating a key it does not own (a client's fallback, a lagging
// router) would write to, and clean up for, one replica too few.
func successorListLength(successors, replicas int) int { return max(successors, replicas) }

// advertiseAddr picks the address peers dial: Advertise if set, else the
// listen address with the bound port filled in when it asked for port 0.
func (c Config) advertiseAddr(bound net.Addr) (string, error) {
	addr := c.Advertise
	switch {
	case addr != "":
	case c.Listener != nil:
		addr = bound.String()
	default:
		addr = c.Addr
		if host, port, _ := net.SplitHostPort(c.Addr); port == "0" {
			_, boundPort, _ := net.SplitHostPort(bound.String())
			addr = net.JoinHostPort(host, boundPort)
		}
	}
	if err := transport.ValidateAddr(addr); err != nil {
		return "", fmt.Errorf("%w: advertise address (set --advertise): %w", ErrInvalidConfig, err)
	}
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return "", fmt.Errorf("%w: advertise address %s is not dialable by peers: set --advertise", ErrInvalidConfig, addr)
	}
	return addr, nil
}

func (c Config) metricsOn() bool { return c.MetricsAddr != "" || c.MetricsListener != nil }

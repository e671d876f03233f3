package cli

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/server"
	"github.com/chordkv/chordkv/internal/store"
)

type serveOptions struct {
	cfg       server.Config
	logFormat string
	logLevel  string
	gcPercent int
}

// defaultGCPercent is a node's garbage collector target (GOGC): the heap
// may grow by this share of the live heap between collections. Go's 100
// made collection a tenth of a node's CPU under a replicated batched put
// load (marking, assists and sweeping, on top of allocation itself); at
// 200, interleaved on a 3-node ring, batched quorum puts went from
// 40,500-47,000 to 46,800-59,400 keys/s, with node CPU per key 35-41 ->
// 28-36 µs (docs/benchmarks.md). 400 did no better. The price is heap under
// load: up to three times the live heap instead of twice. A node at rest
// has a small live heap: `make rest` measured 32.2 MiB RSS per node against
// 28.9 at 100, the same CPU, inside the 40 MiB budget. A node whose block
// cache is full pays more: writing over 1,000,000 keys, 303-339 MiB RSS
// against 235-272 at 100, for 9% more keys/s. Memory-bound deployments set
// --gc-percent 100 or a GOMEMLIMIT.
const defaultGCPercent = 200

// gcPercentToSet is the collector target serve applies: the flag's when it
// was given (on the command line or through CHORDKV_GC_PERCENT); else none
// when GOGC is set, since the runtime applied it already and an operator
// who set it meant it; else defaultGCPercent. 0 means leave it alone.
func gcPercentToSet(flagGiven bool, flagValue int, gogc string) int {
	switch {
	case flagGiven:
		return flagValue
	case gogc != "":
		return 0
	}
	return defaultGCPercent
}

func newServeCmd(client *clientOptions) *cobra.Command {
	o := &serveOptions{}
	d := chord.LoopbackConfig("")
	k := kv.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a chordkv node",
		Long: "Run a chordkv node: join the ring through --join (or the peers remembered in\n" +
			"--data-dir), or create a new ring. SIGINT or SIGTERM makes it leave the ring and stop.\n" +
			"With --tls-cert and --tls-key it serves TLS and calls peers over TLS with the same\n" +
			"certificate; --tls-ca also requires every caller, peer or client, to present a certificate\n" +
			"the CA signed. Certificates must name the advertised host (IP or DNS SAN). Files are\n" +
			"read at start only.",
		Example: "  chordkv serve --addr 127.0.0.1:7000 --data-dir /var/lib/chordkv/n1\n" +
			"  chordkv serve --addr 127.0.0.1:7001 --data-dir /var/lib/chordkv/n2 --join 127.0.0.1:7000 --replicas 3\n" +
			"  chordkv serve --addr 0.0.0.0:7000 --advertise n1:7000 --data-dir /data --metrics-addr :9100 --pprof\n" +
			"  chordkv serve --addr 10.0.0.1:7000 --data-dir /data --tls-cert node.crt --tls-key node.key --tls-ca ca.crt",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), o.logFormat, o.logLevel)
			if err != nil {
				return err
			}
			if o.cfg.DataDir == "" {
				return usageErrorf("--data-dir is required")
			}
			if err := o.checkKV(); err != nil {
				return err
			}
			if o.gcPercent < 1 {
				return usageErrorf("--gc-percent must be at least 1, not %d", o.gcPercent)
			}
			if p := gcPercentToSet(cmd.Flags().Changed("gc-percent"), o.gcPercent, os.Getenv("GOGC")); p > 0 {
				debug.SetGCPercent(p)
			}
			o.cfg.Logger = logger
			o.cfg.TLS = client.tls
			o.cfg.Version = version()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err = server.Run(ctx, o.cfg)
			if errors.Is(err, server.ErrInvalidConfig) {
				return withExitCode(ExitUsage, err)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cfg.Addr, "addr", "127.0.0.1:7000", "host:port to listen on")
	f.StringVar(&o.cfg.Advertise, "advertise", "", "host:port peers dial; the node's ID is its hash (default --addr)")
	f.StringSliceVar(&o.cfg.Join, "join", nil, "comma-separated members to join through; the first may bootstrap the ring")
	f.StringVar(&o.cfg.DataDir, "data-dir", "", "directory for the node's data (required)")
	f.IntVar(&o.cfg.Successors, "successors", d.Successors, "successor-list length; must be at least --replicas - 1")
	f.IntVar(&o.cfg.Replicas, "replicas", k.Replicas, "copies kept of every key: its owner and the owner's next replicas-1 successors")
	f.IntVar(&o.cfg.MaxKeyBytes, "max-key-bytes", k.MaxKeyBytes, "largest key accepted, in bytes")
	f.IntVar(&o.cfg.MaxValueBytes, "max-value-bytes", k.MaxValueBytes, "largest value accepted, in bytes")
	f.Int64Var(&o.cfg.CacheBytes, "cache-bytes", store.DefaultCacheBytes, "memory for the storage engine's blocks, in bytes; filled only as keys are read and written")
	f.DurationVar(&o.cfg.WALMinSyncInterval, "wal-min-sync-interval", store.DefaultWALMinSyncInterval, "shortest time between two fsyncs of the write-ahead log; writes arriving meanwhile share the next one, which saves CPU under many concurrent writes at up to this much latency per write; a write is acknowledged only once synced either way; 0 syncs as soon as asked")
	f.DurationVar(&o.cfg.AntiEntropyInterval, "anti-entropy-interval", k.AntiEntropyInterval, "how often to compare this node's range with its replicas and repair differences")
	f.DurationVar(&o.cfg.ReadLease, "read-lease", k.ReadLease, "the owner of a range answers quorum reads alone while its replicas grant it a lease this long, which spares each quorum read its second replica read (about half of its CPU on a 3-node ring); after an owner crashes, writes to its range fail until its lease expires, and a restarted node refuses writes other nodes coordinate for this long; every node of a ring needs the same value; 0 turns leases off")
	f.DurationVar(&o.cfg.ReadLeaseIdle, "read-lease-idle", k.ReadLeaseIdle, "an owner renews its read lease only while quorum reads of its range came within this long, so that an idle node asks its replicas nothing and its crash stalls no writes; the first read after a pause reads a quorum and takes the lease again; 0 renews it always")
	f.DurationVar(&o.cfg.HandOffTimeout, "handoff-timeout", 5*time.Second, "on SIGTERM, how long to spend handing this node's range to its successors before leaving")
	f.DurationVar(&o.cfg.TombstoneGrace, "tombstone-grace", k.TombstoneGrace, "how long deletes are remembered; must exceed the longest time a replica stays down")
	f.DurationVar(&o.cfg.StabilizeInterval, "stabilize-interval", d.StabilizeInterval, "how often to stabilize")
	f.DurationVar(&o.cfg.CallTimeout, "call-timeout", d.CallTimeout, "deadline of every call to a peer")
	f.IntVar(&o.gcPercent, "gc-percent", defaultGCPercent, "garbage collector target, as GOGC: heap growth allowed between collections, in percent of the live heap; more spends less CPU collecting and more memory under load; when not given, GOGC is used if set")
	f.StringVar(&o.cfg.MetricsAddr, "metrics-addr", "", "host:port serving Prometheus metrics on /metrics (default off)")
	f.BoolVar(&o.cfg.Pprof, "pprof", false, "also serve Go's pprof profiles under /debug/pprof/ on --metrics-addr")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// maxWALMinSyncInterval bounds --wal-min-sync-interval: every write under
// load may wait that long for its sync, so a value past a few milliseconds
// is most likely a mistyped unit.
const maxWALMinSyncInterval = 100 * time.Millisecond

// checkKV refuses replication settings that would otherwise silently fall
// back to defaults (the server treats zero as "default").
func (o *serveOptions) checkKV() error {
	switch {
	case o.cfg.Replicas < 1:
		return usageErrorf("--replicas must be at least 1, not %d", o.cfg.Replicas)
	case o.cfg.MaxKeyBytes < 1:
		return usageErrorf("--max-key-bytes must be at least 1, not %d", o.cfg.MaxKeyBytes)
	case o.cfg.MaxValueBytes < 1:
		return usageErrorf("--max-value-bytes must be at least 1, not %d", o.cfg.MaxValueBytes)
	case o.cfg.CacheBytes < 1<<20:
		return usageErrorf("--cache-bytes must be at least 1048576 (1 MiB), not %d", o.cfg.CacheBytes)
	case o.cfg.WALMinSyncInterval < 0 || o.cfg.WALMinSyncInterval > maxWALMinSyncInterval:
		return usageErrorf("--wal-min-sync-interval must be between 0 and %s, not %s", maxWALMinSyncInterval, o.cfg.WALMinSyncInterval)
	case o.cfg.AntiEntropyInterval <= 0:
		return usageErrorf("--anti-entropy-interval must be positive")
	case o.cfg.ReadLease < 0 || o.cfg.ReadLease > time.Minute:
		return usageErrorf("--read-lease must be between 0 (off) and 1m, not %s", o.cfg.ReadLease)
	case o.cfg.ReadLease > 0 && o.cfg.ReadLease < 30*time.Millisecond:
		return usageErrorf("--read-lease must be 0 (off) or at least 30ms, not %s", o.cfg.ReadLease)
	case o.cfg.ReadLeaseIdle < 0 || o.cfg.ReadLeaseIdle > 0 && o.cfg.ReadLeaseIdle < o.cfg.ReadLease:
		return usageErrorf("--read-lease-idle must be 0 (renew always) or at least --read-lease (%s), not %s", o.cfg.ReadLease, o.cfg.ReadLeaseIdle)
	case o.cfg.TombstoneGrace <= 0:
		return usageErrorf("--tombstone-grace must be positive")
	case o.cfg.HandOffTimeout <= 0:
		return usageErrorf("--handoff-timeout must be positive")
	}
	return nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, usageErrorf("--log-format %q: want text or json", format)
}

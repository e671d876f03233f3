package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/metrics"
	"github.com/chordkv/chordkv/internal/store"
	"github.com/chordkv/chordkv/internal/transport"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// How often the daemon's side loops look at the node. Health must follow
// readiness quickly; peers.json only needs to be roughly current.
const (
	healthInterval  = 100 * time.Millisecond
	persistInterval = time.Second
)

// defaultStreamWorkers covers the concurrency `chordkv bench` drives a node
// with (64 callers) so that RPCs rarely fall back to a fresh goroutine.
const defaultStreamWorkers = 64

// storeDir is where, under --data-dir, the node keeps its key-value data.
const storeDir = "data"

// daemon is one running node and what serves it.
type daemon struct {
	cfg     Config
	log     *slog.Logger
	node    *chord.Node
	kv      *kv.Node
	store   *store.Store
	clients []*transport.Client // peer connections: ring control, data
	grpc    *grpc.Server
	health  *health.Server
	// metrics and metricsHTTP are nil when metrics are off.
	metrics     *metrics.Metrics
	metricsHTTP *http.Server
	metricsLis  net.Listener

	saved []string // successor list last written to peers.json
}

// Run serves a node until ctx ends, then leaves the ring and stops. It
// returns an error if the node cannot start or the server fails; a clean
// shutdown returns nil.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = defaultShutdownTimeout
	}
	if cfg.HandOffTimeout <= 0 {
		cfg.HandOffTimeout = defaultHandOffTimeout
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	lis := cfg.Listener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", cfg.Addr); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	mlis := cfg.MetricsListener
	if mlis == nil && cfg.MetricsAddr != "" {
		var err error
		if mlis, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			lis.Close()
			return fmt.Errorf("metrics listen: %w", err)
		}
	}
	d, err := newDaemon(cfg, lis.Addr())
	if err != nil {
		lis.Close()
		if mlis != nil {
			mlis.Close()
		}
		return err
	}
	d.metricsLis = mlis
	return d.run(ctx, lis)
}

func newDaemon(cfg Config, bound net.Addr) (*daemon, error) {
	advertise, err := cfg.advertiseAddr(bound)
	if err != nil {
		return nil, err
	}
	ncfg := chord.LoopbackConfig(advertise)
	if cfg.Successors > 0 {
		ncfg.Successors = cfg.Successors
	}
	if cfg.StabilizeInterval > 0 {
		ncfg.StabilizeInterval = cfg.StabilizeInterval
	}
	if cfg.CallTimeout > 0 {
		ncfg.CallTimeout = cfg.CallTimeout
	}
	ncfg.Logger = cfg.Logger
	kcfg := kvConfig(cfg)
	var m *metrics.Metrics
	var grpcOpts []grpc.ServerOption
	if cfg.metricsOn() {
		m = metrics.New(cfg.Logger)
		ncfg.Observer = m
		kcfg.Observer = m
		grpcOpts = m.ServerOptions()
	}
	if err := checkReplicas(kcfg.Replicas, ncfg.Successors); err != nil {
		return nil, err
	}
	if n := successorListLength(ncfg.Successors, kcfg.Replicas); n != ncfg.Successors {
		cfg.Logger.Info("keeping one more successor than --successors asks: a lookup names a key's replicas from the successor list of the owner's predecessor, which starts at the owner",
			"successors", ncfg.Successors, "replicas", kcfg.Replicas, "kept", n)
		ncfg.Successors = n
	}
	sec, err := loadSecurity(cfg.TLS)
	if err != nil {
		return nil, err
	}
	grpcOpts = append(grpcOpts, sec.server...)
	grpcOpts = append(grpcOpts, transport.ServerOptions()...)
	if w := cfg.StreamWorkers; w >= 0 {
		if w == 0 {
			w = defaultStreamWorkers
		}
		grpcOpts = append(grpcOpts, grpc.NumStreamWorkers(uint32(w)))
	}

	storePath := filepath.Join(cfg.DataDir, storeDir)
	// A store left by an earlier run means that run may have granted read
	// leases this one does not remember (kv.Config.Restarted).
	if _, err := os.Stat(storePath); err == nil {
		kcfg.Restarted = true
	}
	st, err := store.Open(store.Options{Dir: storePath, CacheBytes: cfg.CacheBytes, WALMinSyncInterval: cfg.WALMinSyncInterval, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	if kcfg.Restarted && kcfg.ReadLease > 0 {
		cfg.Logger.Info("restarted with read leases on: refusing writes other nodes coordinate until any lease granted before has run out",
			"for", kcfg.ReadLease)
	}
	// Every message must fit a maximal value plus a replica batch, both
	// ways, between peers and from clients.
	maxMsg := transport.MaxMessageBytes(kcfg.MaxKeyBytes, kcfg.MaxValueBytes)
	// Ring maintenance and data travel on separate connections to each
	// peer (as CockroachDB separates its system RPC class): under a heavy
	// load, stabilize and lookup calls would otherwise queue behind replica
	// batches on one HTTP/2 connection, miss their deadlines and make live
	// peers look dead.
	control := transport.NewClient(sec.client...)
	data := transport.NewClient(append(sec.client, transport.WithMaxMessageBytes(maxMsg))...)
	node := chord.NewNode(ncfg, control)
	d := &daemon{
		cfg:     cfg,
		log:     cfg.Logger.With("node", advertise),
		node:    node,
		kv:      kv.New(kcfg, node, st, data, store.NewClock(time.Now)),
		store:   st,
		clients: []*transport.Client{control, data},
		grpc: grpc.NewServer(append(grpcOpts,
			grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg))...),
		health:  health.NewServer(),
		metrics: m,
	}
	storeStats := func() transport.StoreStats {
		ss := st.Stats()
		return transport.StoreStats{Keys: ss.Keys, Tombstones: ss.Tombstones, Bytes: ss.Bytes}
	}
	transport.NewServer(node, transport.WithMaxKeyBytes(kcfg.MaxKeyBytes), transport.WithStoreStats(storeStats),
		transport.WithLeaseStatus(d.kv.Leases), transport.WithSyncStatus(d.kv.Synced)).Register(d.grpc)
	transport.NewKVServer(d.kv, st, node).Register(d.grpc)
	healthpb.RegisterHealthServer(d.grpc, d.health)
	reflection.Register(d.grpc)
	if m != nil {
		m.InitializeGRPC(d.grpc)
		if err := m.WatchNode(node, st, cfg.Version); err != nil {
			_ = st.Close()
			return nil, err
		}
		if err := m.WatchLease(d.kv.LeaseHeld, func() int64 { return d.kv.Stats().LeaseReads }); err != nil {
			_ = st.Close()
			return nil, err
		}
	}
	d.setServing(false)
	warnIfExposedPlaintext(d.log, cfg.TLS, bound, advertise)
	return d, nil
}

// kvConfig is the replication layer's configuration: the operator's
// settings over kv's defaults.
func kvConfig(cfg Config) kv.Config {
	k := kv.DefaultConfig()
	k.Logger = cfg.Logger
	if cfg.Replicas > 0 {
		k.Replicas = cfg.Replicas
	}
	if cfg.MaxKeyBytes > 0 {
		k.MaxKeyBytes = cfg.MaxKeyBytes
	}
	if cfg.MaxValueBytes > 0 {
		k.MaxValueBytes = cfg.MaxValueBytes
	}
	if cfg.AntiEntropyInterval > 0 {
		k.AntiEntropyInterval = cfg.AntiEntropyInterval
	}
	if cfg.TombstoneGrace > 0 {
		k.TombstoneGrace = cfg.TombstoneGrace
	}
	k.ReadLease, k.ReadLeaseIdle = cfg.ReadLease, cfg.ReadLeaseIdle
	return k
}

func (d *daemon) run(ctx context.Context, lis net.Listener) error {
	serveErr := make(chan error, 2)
	go func() {
		if err := d.grpc.Serve(lis); err != nil {
			serveErr <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	d.log.Info("serving", "listen", lis.Addr().String(), "id", d.node.Self().ID.String(),
		"tls", d.cfg.TLS.Enabled(), "mutual_tls", d.cfg.TLS.CA != "")
	if d.metricsLis != nil {
		d.metricsHTTP = &http.Server{
			Handler:           d.metrics.Handler(d.cfg.Pprof),
			ReadHeaderTimeout: 5 * time.Second,
		}
		go func() {
			if err := d.metricsHTTP.Serve(d.metricsLis); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("metrics: %w", err)
			}
		}()
		d.log.Info("serving metrics", "listen", d.metricsLis.Addr().String(), "path", metrics.Path, "pprof", d.cfg.Pprof)
	}

	runCtx, stopLoops := context.WithCancel(ctx)
	var loops sync.WaitGroup
	loops.Go(func() { d.healthLoop(runCtx) })
	loops.Go(func() { d.persistLoop(runCtx) })
	joined := make(chan error, 1)
	loops.Go(func() {
		created, err := d.joinOrCreate(runCtx)
		joined <- err
		if err != nil {
			return
		}
		if created {
			// A new ring's only member holds all there is of it.
			d.kv.MarkSynced()
		} else {
			// Until the range is pulled from the successor, reads the node
			// would coordinate go to the successor; health waits for it.
			loops.Go(func() {
				if err := d.kv.SyncAfterJoin(runCtx); err != nil && runCtx.Err() == nil {
					d.log.Warn("range sync after join incomplete", "err", err)
				}
			})
		}
		loops.Go(func() { d.kv.Run(runCtx) })
		d.node.Run(runCtx)
	})

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	stopLoops()
	loops.Wait()
	joinErr := <-joined
	if joinErr == nil {
		d.persist()
		d.handOff()
	}
	d.shutdown()
	return err
}

// handOff gives the node's ranges to the nodes that replicate them once it
// is gone (kv.Node.HandOff), while the node is still a member and serving,
// so a SIGTERM never costs a replica. It is bounded: a node that cannot finish
// in time leaves the rest to its successors' anti-entropy.
func (d *daemon) handOff() {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.HandOffTimeout)
	defer cancel()
	start := time.Now()
	n, err := d.kv.HandOff(ctx)
	if err != nil {
		d.log.Warn("hand-off incomplete", "replicas", n, "err", err, "took", time.Since(start))
		return
	}
	d.log.Info("handed off ranges", "replicas", n, "entries", d.kv.Stats().HandedOff, "took", time.Since(start))
}

// shutdown leaves the ring while still serving, so neighbours can reach us
// while they splice us out, then stops serving (gracefully for a bounded
// time, then hard) and closes the store once nothing can use it.
func (d *daemon) shutdown() {
	leaveCtx, cancel := context.WithTimeout(context.Background(), 3*d.node.Config().CallTimeout)
	d.node.Leave(leaveCtx)
	cancel()
	releaseCtx, cancel := context.WithTimeout(context.Background(), d.kv.Config().CallTimeout)
	d.kv.ReleaseLease(releaseCtx)
	cancel()
	d.health.Shutdown()
	done := make(chan struct{})
	go func() {
		d.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d.cfg.ShutdownTimeout):
		d.log.Warn("graceful stop timed out; stopping hard", "after", d.cfg.ShutdownTimeout)
		d.grpc.Stop()
		<-done
	}
	// Writes acknowledged at quorum may still be on their way to their last
	// replica; let them land (each is bounded by the call timeout) before the
	// store and the peer connections close.
	idleCtx, cancelIdle := context.WithTimeout(context.Background(), 2*d.kv.Config().CallTimeout)
	if err := d.kv.WaitIdle(idleCtx); err != nil {
		d.log.Warn("stopping with replication still in flight", "err", err)
	}
	cancelIdle()
	// Metrics stop with the store: a scrape reads it. They are served up to
	// here so that the hand-off and leave show in a last scrape.
	if d.metricsHTTP != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := d.metricsHTTP.Shutdown(ctx); err != nil {
			d.log.Warn("stopping the metrics server", "err", err)
			_ = d.metricsHTTP.Close()
		}
		cancel()
	}
	for _, c := range d.clients {
		_ = c.Close()
	}
	if err := d.store.Close(); err != nil {
		d.log.Error("closing the store", "err", err)
	}
	d.log.Info("stopped")
}

// joinOrCreate makes the node a member. It tries the peers remembered from
// the last run and the --join addresses until one answers. A node allowed to
// bootstrap (no --join, or it is the first --join address) creates a ring
// after one round in which nobody answered; others keep retrying with
// backoff until ctx ends. created reports that the node made a new ring.
func (d *daemon) joinOrCreate(ctx context.Context) (created bool, err error) {
	self := d.node.Self().Addr
	remembered, err := loadPeers(d.cfg.DataDir)
	if err != nil {
		d.log.Warn("ignoring remembered peers", "err", err)
	}
	seeds := joinCandidates(self, remembered, d.cfg.Join)
	mayCreate := len(d.cfg.Join) == 0 || d.cfg.Join[0] == self
	if len(seeds) == 0 {
		d.node.Create()
		return true, nil
	}
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := d.node.Join(ctx, seeds)
		if err == nil {
			return false, nil
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if mayCreate {
			if len(remembered) > 0 {
				d.log.Warn("no remembered peer answered; creating a new ring", "peers", remembered, "err", err)
			}
			d.node.Create()
			return true, nil
		}
		d.log.Warn("join failed; retrying", "attempt", attempt, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// joinCandidates lists remembered peers first (they were our neighbours, so
// joining through them is cheapest) then --join addresses, without
// duplicates or this node.
func joinCandidates(self string, remembered, join []string) []string {
	var out []string
	for _, a := range slices.Concat(remembered, join) {
		if a != "" && a != self && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// healthLoop reports SERVING exactly while the node is ready: a member
// with a full successor list whose kv layer has taken over its range.
func (d *daemon) healthLoop(ctx context.Context) {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	serving := false
	for {
		if ready := d.node.State().Ready && d.kv.Synced(); ready != serving {
			serving = ready
			d.setServing(serving)
			d.log.Info("health changed", "serving", serving)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *daemon) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, svc := range []string{"", pb.Chord_ServiceDesc.ServiceName, pb.Admin_ServiceDesc.ServiceName,
		pb.KV_ServiceDesc.ServiceName, pb.Replica_ServiceDesc.ServiceName} {
		d.health.SetServingStatus(svc, st)
	}
}

// persistLoop rewrites peers.json whenever the successor list changed.
func (d *daemon) persistLoop(ctx context.Context) {
	t := time.NewTicker(persistInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.persist()
		}
	}
}

// persist saves the successor list if it changed since the last save. It is
// called from one goroutine at a time: the persist loop, then shutdown.
func (d *daemon) persist() {
	var now []string
	for _, p := range d.node.State().Successors {
		now = append(now, p.Addr)
	}
	if len(now) == 0 {
		return // alone or not yet joined: keep what we knew
	}
	if slices.Equal(d.saved, now) {
		return
	}
	if err := savePeers(d.cfg.DataDir, now); err != nil {
		d.log.Warn("cannot remember peers", "err", err)
		return
	}
	d.saved = now
}

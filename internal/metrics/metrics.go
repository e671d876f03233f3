package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/transport"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// Path is where Handler serves the metrics.
const Path = "/metrics"

// Buckets. Lookups take O(log N) hops: 0..16 covers rings of tens of
// thousands of nodes; more lands in +Inf. Latencies run from a local hit
// (sub-millisecond) to the 10 s default request deadline.
var (
	hopBuckets     = prometheus.LinearBuckets(0, 1, 17)
	latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 15) // 0.5 ms .. 8.2 s
)

// kvOps names the client operations of the KV service, by gRPC method.
var kvOps = map[string]string{
	pb.KV_Get_FullMethodName:    "get",
	pb.KV_Put_FullMethodName:    "put",
	pb.KV_Delete_FullMethodName: "delete",
}

// Metrics is one daemon's metrics. It implements chord.Observer and
// kv.Observer; hand it to both configs, then call WatchNode once the node
// and store exist. All methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	lookupHops      prometheus.Histogram
	lookupDuration  prometheus.Histogram
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	stabilize       *prometheus.CounterVec
	handoff         *prometheus.CounterVec
	replicaCallKeys *prometheus.HistogramVec
	// replicaCallKeysBy holds replicaCallKeys' series by call kind,
	// resolved once: every merged replica call observes one.
	replicaCallKeysBy map[string]prometheus.Observer
	grpc              *grpcServerMetrics
	// byMethod holds, per KV method, the series every request of it
	// touches, resolved once: a label lookup per request hashes the label
	// values and takes the vector's lock, on the path of every client call.
	byMethod map[string]opSeries
}

// opSeries is one KV operation's pre-resolved series.
type opSeries struct {
	op       string
	duration prometheus.Observer
	ok       prometheus.Counter
}

var (
	_ chord.Observer = (*Metrics)(nil)
	_ kv.Observer    = (*Metrics)(nil)
)

// New builds and registers every family except the node gauges (see
// WatchNode). Labelled counters start at zero for their known label values,
// so rate() works from the first scrape. A nil logger means slog.Default().
func New(log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.Default()
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: log,
		lookupHops: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chordkv_lookup_hops",
			Help:    "Hops each successful lookup this node ran took to reach the key's owner (0: this node owns it).",
			Buckets: hopBuckets,
		}),
		lookupDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chordkv_lookup_duration_seconds",
			Help:    "Duration of the lookups this node ran, failed ones included.",
			Buckets: latencyBuckets,
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chordkv_requests_total",
			Help: "Client KV requests this node received (not those forwarded to it by another node), by operation and gRPC status code.",
		}, []string{"op", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chordkv_request_duration_seconds",
			Help:    "Duration of client KV requests this node received, as the client saw it, by operation.",
			Buckets: latencyBuckets,
		}, []string{"op"}),
		stabilize: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chordkv_stabilize_total",
			Help: "Stabilize rounds this node ran as a ring member, by result (ok or error).",
		}, []string{"result"}),
		handoff: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chordkv_handoff_keys_total",
			Help: "Entries moved by hand-off, anti-entropy and cleanup: out = pushed to and stored by a peer, in = pulled from a peer and stored here.",
		}, []string{"direction"}),
		replicaCallKeys: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chordkv_replica_call_keys",
			Help:    "Keys per call this node made to another replica for client requests (read or apply), after merging concurrent requests' calls.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9), // 1 to 256 (ReplicaBatchKeys)
		}, []string{"call"}),
		grpc: newGRPCServerMetrics(latencyBuckets),
	}
	m.byMethod = make(map[string]opSeries, len(kvOps))
	for method, op := range kvOps {
		m.byMethod[method] = opSeries{
			op:       op,
			duration: m.requestDuration.WithLabelValues(op),
			ok:       m.requests.WithLabelValues(op, codes.OK.String()),
		}
	}
	m.stabilize.WithLabelValues("ok")
	m.stabilize.WithLabelValues("error")
	m.handoff.WithLabelValues(string(kv.DirectionIn))
	m.handoff.WithLabelValues(string(kv.DirectionOut))
	m.replicaCallKeysBy = map[string]prometheus.Observer{}
	for _, call := range []string{"read", "apply"} {
		m.replicaCallKeysBy[call] = m.replicaCallKeys.WithLabelValues(call)
	}
	m.reg.MustRegister(
		m.lookupHops, m.lookupDuration, m.requests, m.requestDuration, m.stabilize, m.handoff, m.replicaCallKeys, m.grpc,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Gatherer is the registry behind Handler, for tests.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// LookupDone implements chord.Observer. Only successful lookups add to the
// hop histogram: a failed one's hops say nothing about the ring's routing.
func (m *Metrics) LookupDone(hops int, took time.Duration, err error) {
	m.lookupDuration.Observe(took.Seconds())
	if err == nil {
		m.lookupHops.Observe(float64(hops))
	}
}

// StabilizeDone implements chord.Observer.
func (m *Metrics) StabilizeDone(err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.stabilize.WithLabelValues(result).Inc()
}

// EntriesHandedOff implements kv.Observer.
func (m *Metrics) EntriesHandedOff(dir kv.Direction, n int) {
	m.handoff.WithLabelValues(string(dir)).Add(float64(n))
}

// ReplicaCallSent implements kv.Observer.
func (m *Metrics) ReplicaCallSent(call string, keys int) {
	o, ok := m.replicaCallKeysBy[call]
	if !ok {
		o = m.replicaCallKeys.WithLabelValues(call)
	}
	o.Observe(float64(keys))
}

// ServerOptions instruments a gRPC server: the grpc_server_* families (see
// grpcServerMetrics) for every RPC, and chordkv_requests_total and
// chordkv_request_duration_seconds for client KV requests.
func (m *Metrics) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.grpc.unary, m.countRequests),
		grpc.ChainStreamInterceptor(m.grpc.stream),
	}
}

// InitializeGRPC creates the zero-valued grpc_server_* series of every
// method registered on s; call it after registering the services.
func (m *Metrics) InitializeGRPC(s *grpc.Server) { m.grpc.initialize(s) }

// countRequests records client KV requests. It is an interceptor rather than
// code in internal/transport so that the transport stays free of metrics
// and the code recorded is the one the client receives, including refusals
// made before the replication layer is reached (not a member yet, a bad
// consistency level). Requests another node forwarded here are left out:
// the node the client called counts them, end to end, so summing over nodes
// counts every client request once. The grpc_server_* families count
// every RPC, forwarded ones included.
func (m *Metrics) countRequests(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	series, ok := m.byMethod[info.FullMethod]
	if !ok || transport.IsForwarded(ctx) {
		return handler(ctx, req)
	}
	start := time.Now()
	resp, err := handler(ctx, req)
	series.duration.Observe(time.Since(start).Seconds())
	if code := status.Code(err); code == codes.OK {
		series.ok.Inc()
	} else {
		m.requests.WithLabelValues(series.op, code.String()).Inc()
	}
	return resp, err
}

// Handler serves the metrics on Path and, with withPprof, the runtime
// profiles of net/http/pprof under /debug/pprof/. A collector that fails
// (say, the store cannot be read) is logged and its family left out; the
// rest are still served.
func (m *Metrics) Handler(withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(Path, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slogAdapter{m.log},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // promhttp_metric_handler_errors_total
	}))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// slogAdapter is promhttp's error logger.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Println(v ...any) {
	a.log.Warn("serving metrics", "err", fmt.Sprint(v...))
}

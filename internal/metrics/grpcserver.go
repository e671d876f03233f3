package metrics

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcServerMetrics counts every RPC a node serves in the grpc_server_*
// families of go-grpc-middleware's Prometheus provider, which chordkv used
// before: the same names, help texts, label names and label values, counted
// at the same points, so dashboards and alerts written for them keep working
// (TestGRPCFamiliesMatchTheMiddleware holds the two side by side).
//
// It replaces the library because the library resolves each call's series
// from its label values (five lookups, each hashing the labels and taking a
// lock) on every call: about 5% of a node's CPU under a saturated Get load
// (docs/benchmarks.md). Here the series of each registered method are
// resolved once, by initialize; a method it does not know (none, once
// initialize has run) takes the slow path of a lookup per call.
type grpcServerMetrics struct {
	started  *prometheus.CounterVec
	handled  *prometheus.CounterVec
	received *prometheus.CounterVec
	sent     *prometheus.CounterVec
	handling *prometheus.HistogramVec

	// byMethod maps a full method name ("/chordkv.v1.KV/Get") to its
	// series. It is written once, by initialize, and read on every call.
	byMethod atomic.Pointer[map[string]*methodSeries]
}

// methodSeries is one method's labels and, when resolved, its series.
type methodSeries struct {
	typ, service, method string

	resolved                bool // the fields below are set
	started, received, sent prometheus.Counter
	handling                prometheus.Observer
	handled                 [numCodes]prometheus.Counter // by codes.Code
}

// numCodes is the number of gRPC status codes, OK (0) to Unauthenticated
// (16); a status carrying another code takes the slow path.
const numCodes = int(codes.Unauthenticated) + 1

// The label values of grpc_type.
const (
	typeUnary        = "unary"
	typeClientStream = "client_stream"
	typeServerStream = "server_stream"
	typeBidiStream   = "bidi_stream"
)

func newGRPCServerMetrics(buckets []float64) *grpcServerMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	return &grpcServerMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total",
			Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, append(labels[:3:3], "grpc_code")),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total",
			Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total",
			Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: buckets,
		}, labels),
	}
}

// Describe implements prometheus.Collector.
func (g *grpcServerMetrics) Describe(ch chan<- *prometheus.Desc) {
	g.started.Describe(ch)
	g.handled.Describe(ch)
	g.received.Describe(ch)
	g.sent.Describe(ch)
	g.handling.Describe(ch)
}

// Collect implements prometheus.Collector.
func (g *grpcServerMetrics) Collect(ch chan<- prometheus.Metric) {
	g.started.Collect(ch)
	g.handled.Collect(ch)
	g.received.Collect(ch)
	g.sent.Collect(ch)
	g.handling.Collect(ch)
}

// initialize resolves the series of every method registered on s, and so
// creates them at zero (every status code included), so that rate() works
// from the first scrape. Call it once, after registering the services and
// before serving.
func (g *grpcServerMetrics) initialize(s *grpc.Server) {
	byMethod := map[string]*methodSeries{}
	for service, info := range s.GetServiceInfo() {
		for _, m := range info.Methods {
			typ := typeOf(m.IsClientStream, m.IsServerStream)
			ms := &methodSeries{
				typ: typ, service: service, method: m.Name, resolved: true,
				started:  g.started.WithLabelValues(typ, service, m.Name),
				received: g.received.WithLabelValues(typ, service, m.Name),
				sent:     g.sent.WithLabelValues(typ, service, m.Name),
				handling: g.handling.WithLabelValues(typ, service, m.Name),
			}
			for c := range ms.handled {
				ms.handled[c] = g.handled.WithLabelValues(typ, service, m.Name, codes.Code(c).String())
			}
			byMethod["/"+service+"/"+m.Name] = ms
		}
	}
	g.byMethod.Store(&byMethod)
}

// begin counts a call's start and returns its method's series: the
// resolved ones, or, for a method initialize did not see, its labels.
func (g *grpcServerMetrics) begin(fullMethod, typ string) *methodSeries {
	if m := g.byMethod.Load(); m != nil {
		if s := (*m)[fullMethod]; s != nil {
			s.started.Inc()
			return s
		}
	}
	s := &methodSeries{typ: typ}
	s.service, s.method = splitMethod(fullMethod)
	g.started.WithLabelValues(s.typ, s.service, s.method).Inc()
	return s
}

func (g *grpcServerMetrics) messageReceived(s *methodSeries) {
	if s.resolved {
		s.received.Inc()
		return
	}
	g.received.WithLabelValues(s.typ, s.service, s.method).Inc()
}

func (g *grpcServerMetrics) messageSent(s *methodSeries) {
	if s.resolved {
		s.sent.Inc()
		return
	}
	g.sent.WithLabelValues(s.typ, s.service, s.method).Inc()
}

func (g *grpcServerMetrics) end(s *methodSeries, start time.Time, err error) {
	took := time.Since(start).Seconds()
	code := codeOf(err)
	if !s.resolved {
		g.handling.WithLabelValues(s.typ, s.service, s.method).Observe(took)
	} else {
		s.handling.Observe(took)
	}
	if s.resolved && int(code) < numCodes {
		s.handled[code].Inc()
		return
	}
	g.handled.WithLabelValues(s.typ, s.service, s.method, code.String()).Inc()
}

// unary is the unary server interceptor. As in the middleware, a unary
// call receives one message and sends one unless it fails.
func (g *grpcServerMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	s := g.begin(info.FullMethod, typeUnary)
	g.messageReceived(s)
	resp, err := handler(ctx, req)
	if err == nil {
		g.messageSent(s)
	}
	g.end(s, start, err)
	return resp, err
}

// stream is the stream server interceptor: it counts the messages each
// stream receives and sends without error.
func (g *grpcServerMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	s := g.begin(info.FullMethod, typeOf(info.IsClientStream, info.IsServerStream))
	err := handler(srv, &countedStream{ServerStream: ss, g: g, s: s})
	g.end(s, start, err)
	return err
}

type countedStream struct {
	grpc.ServerStream
	g *grpcServerMetrics
	s *methodSeries
}

func (s *countedStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.g.messageSent(s.s)
	}
	return err
}

func (s *countedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.g.messageReceived(s.s)
	}
	return err
}

// codeOf is the status code the server sends for err; as gRPC does, a
// context error that carries no status becomes Canceled or DeadlineExceeded.
func codeOf(err error) codes.Code {
	s, ok := status.FromError(err)
	if !ok {
		s = status.FromContextError(err)
	}
	return s.Code()
}

func typeOf(clientStream, serverStream bool) string {
	switch {
	case !clientStream && !serverStream:
		return typeUnary
	case clientStream && !serverStream:
		return typeClientStream
	case !clientStream && serverStream:
		return typeServerStream
	default:
		return typeBidiStream
	}
}

// splitMethod splits "/service/method" as the middleware does.
func splitMethod(fullMethod string) (service, method string) {
	fullMethod = strings.TrimPrefix(fullMethod, "/")
	if i := strings.Index(fullMethod, "/"); i >= 0 {
		return fullMethod[:i], fullMethod[i+1:]
	}
	return "unknown", "unknown"
}

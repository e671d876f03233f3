package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// interceptors is one implementation of the grpc_server_* families under
// test: a collector and its two interceptors, initialized on a server.
type interceptors struct {
	collector prometheus.Collector
	unary     grpc.UnaryServerInterceptor
	stream    grpc.StreamServerInterceptor
}

func ours(s *grpc.Server, initialize bool) interceptors {
	g := newGRPCServerMetrics(latencyBuckets)
	if initialize {
		g.initialize(s)
	}
	return interceptors{g, g.unary, g.stream}
}

func middleware(s *grpc.Server, initialize bool) interceptors {
	m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(latencyBuckets)))
	if initialize {
		m.InitializeMetrics(s)
	}
	return interceptors{m, m.UnaryServerInterceptor(), m.StreamServerInterceptor()}
}

// fakeStream is a server stream that delivers recvs messages, then
// io.EOF, and fails every send after failSendsAfter of them.
type fakeStream struct {
	grpc.ServerStream
	recvs, sends, failSendsAfter int
}

func (f *fakeStream) Context() context.Context { return context.Background() }
func (f *fakeStream) RecvMsg(any) error {
	if f.recvs == 0 {
		return io.EOF
	}
	f.recvs--
	return nil
}
func (f *fakeStream) SendMsg(any) error {
	if f.sends >= f.failSendsAfter {
		return errors.New("connection lost")
	}
	f.sends++
	return nil
}

// drive makes the same calls through is: unary calls that succeed, fail
// with a status, with a context error, with a plain error and with a code
// outside gRPC's range, to a registered method and to one the server does
// not know; and a stream that receives and sends messages until a send
// fails.
func drive(t *testing.T, is interceptors) {
	t.Helper()
	ctx := context.Background()
	results := []error{
		nil, nil, nil,
		status.Error(codes.NotFound, "no such key"),
		status.Error(codes.Unavailable, "owner down"),
		context.DeadlineExceeded,
		context.Canceled,
		errors.New("plain"),
		status.Error(codes.Code(42), "from the future"),
	}
	for _, method := range []string{healthpb.Health_Check_FullMethodName, "/chordkv.test.Nope/Call", "malformed"} {
		for _, want := range results {
			info := &grpc.UnaryServerInfo{FullMethod: method}
			_, err := is.unary(ctx, "req", info, func(context.Context, any) (any, error) { return "resp", want })
			if !errors.Is(err, want) && status.Code(err) != status.Code(want) {
				t.Fatalf("unary %s: err %v, want %v", method, err, want)
			}
		}
	}
	info := &grpc.StreamServerInfo{FullMethod: healthpb.Health_Watch_FullMethodName, IsServerStream: true}
	err := is.stream(nil, &fakeStream{recvs: 1, failSendsAfter: 3}, info, func(_ any, ss grpc.ServerStream) error {
		for ss.RecvMsg(nil) == nil {
		}
		for {
			if err := ss.SendMsg(nil); err != nil {
				return status.Error(codes.Unavailable, err.Error())
			}
		}
	})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("stream: err %v, want Unavailable", err)
	}
}

// families gathers c's families as text, one line per series: name, help,
// type, labels and value; a histogram's value is its sample count, since
// durations differ between runs.
func families(t *testing.T, c prometheus.Collector) []string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, mf := range mfs {
		lines = append(lines, fmt.Sprintf("# %s %s %q", mf.GetName(), mf.GetType(), mf.GetHelp()))
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			value := m.GetCounter().GetValue()
			if mf.GetType() == dto.MetricType_HISTOGRAM {
				value = float64(m.GetHistogram().GetSampleCount())
				if n := len(m.GetHistogram().GetBucket()); n != len(latencyBuckets) {
					t.Errorf("%s{%s}: %d buckets, want %d", mf.GetName(), strings.Join(labels, ","), n, len(latencyBuckets))
				}
			}
			lines = append(lines, fmt.Sprintf("%s{%s} %v", mf.GetName(), strings.Join(labels, ","), value))
		}
	}
	slices.Sort(lines)
	return lines
}

// TestGRPCFamiliesMatchTheMiddleware holds chordkv's grpc_server_* families
// to go-grpc-middleware's, which they replace: the same calls must give the
// same families, series and counts, whether or not the methods were
// initialized first.
func TestGRPCFamiliesMatchTheMiddleware(t *testing.T) {
	for _, initialize := range []bool{true, false} {
		t.Run(fmt.Sprintf("initialize=%v", initialize), func(t *testing.T) {
			s := grpc.NewServer()
			healthpb.RegisterHealthServer(s, health.NewServer())
			want, got := middleware(s, initialize), ours(s, initialize)
			drive(t, want)
			drive(t, got)
			wantLines, gotLines := families(t, want.collector), families(t, got.collector)
			if len(wantLines) < 20 {
				t.Fatalf("the middleware produced only %d lines; the test drives too little:\n%s", len(wantLines), strings.Join(wantLines, "\n"))
			}
			for _, l := range wantLines {
				if !slices.Contains(gotLines, l) {
					t.Errorf("missing: %s", l)
				}
			}
			for _, l := range gotLines {
				if !slices.Contains(wantLines, l) {
					t.Errorf("extra:   %s", l)
				}
			}
		})
	}
}

// BenchmarkGRPCServerInterceptor is the grpc_server_* families' cost on
// every RPC, around a handler that does nothing: chordkv's and, for
// comparison, go-grpc-middleware's.
func BenchmarkGRPCServerInterceptor(b *testing.B) {
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	for name, is := range map[string]interceptors{"chordkv": ours(s, true), "middleware": middleware(s, true)} {
		b.Run(name, func(b *testing.B) {
			info := &grpc.UnaryServerInfo{FullMethod: healthpb.Health_Check_FullMethodName}
			handler := func(context.Context, any) (any, error) { return nil, nil }
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := is.unary(ctx, nil, info, handler); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

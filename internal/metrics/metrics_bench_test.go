package metrics

import (
	"context"
	"log/slog"
	"testing"

	"google.golang.org/grpc"

	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// BenchmarkCountRequests is the chordkv_requests_* interceptor's own cost on
// every client KV call, around a handler that does nothing.
func BenchmarkCountRequests(b *testing.B) {
	m := New(slog.New(slog.DiscardHandler))
	info := &grpc.UnaryServerInfo{FullMethod: pb.KV_Put_FullMethodName}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.countRequests(ctx, nil, info, handler); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

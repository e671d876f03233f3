// Package servertest runs real in-process chordkv nodes for other packages'
// tests: a full internal/server daemon on a loopback port, with intervals
// short enough that a ring forms in well under a second, stopped when the
// test ends. It is for tests only.
package servertest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/server"
)

// Start runs a node that joins join (none: it creates a ring) and returns its
// address. tweak, when not nil, adjusts the configuration first (TLS, say).
func Start(t testing.TB, tweak func(*server.Config), join ...string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := server.Config{
		Listener: lis, Join: join, DataDir: filepath.Join(t.TempDir(), "data"), Successors: 3,
		StabilizeInterval: 50 * time.Millisecond, CallTimeout: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	go func() { done <- server.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server %s: %v", lis.Addr(), err)
		}
	})
	return lis.Addr().String()
}

package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestFixedWindowsSendNoPings checks that chordkv's connections carry no
// PING frames of gRPC's bandwidth-delay estimator, which fixed windows turn
// off: each would cost a socket write and a read on both sides per round
// of requests. gRPC's defaults are the control case, so the test would
// notice if counting PINGs stopped working.
func TestFixedWindowsSendNoPings(t *testing.T) {
	tests := []struct {
		name      string
		server    []grpc.ServerOption
		dial      []grpc.DialOption
		wantPings bool
	}{
		{name: "chordkv options", server: ServerOptions(), dial: DialOptions(insecure.NewCredentials()), wantPings: false},
		{name: "gRPC defaults", dial: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, wantPings: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			rec := &frameRecorder{Listener: lis}
			srv := grpc.NewServer(tc.server...)
			healthpb.RegisterHealthServer(srv, health.NewServer())
			go srv.Serve(rec) //nolint:errcheck // ends with Stop
			defer srv.Stop()

			cc, err := grpc.NewClient(lis.Addr().String(), tc.dial...)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			client := healthpb.NewHealthClient(cc)
			// Calls one after another, as a lone writer makes them: each
			// response lands on a quiet connection.
			for i := range 20 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
				cancel()
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			fromClient, fromServer := rec.pings()
			if got := fromClient+fromServer > 0; got != tc.wantPings {
				t.Errorf("PING frames sent: %d by the client, %d by the server; want some: %v", fromClient, fromServer, tc.wantPings)
			}
		})
	}
}

// frameRecorder keeps what the client and the server of each accepted
// connection wrote, to count their HTTP/2 frames afterwards.
type frameRecorder struct {
	net.Listener
	mu    sync.Mutex
	conns []*recordedConn
}

func (r *frameRecorder) Accept() (net.Conn, error) {
	c, err := r.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recordedConn{Conn: c}
	r.mu.Lock()
	r.conns = append(r.conns, rc)
	r.mu.Unlock()
	return rc, nil
}

// pings counts the PING frames, acks left out, that clients and servers
// sent on every connection accepted so far.
func (r *frameRecorder) pings() (fromClient, fromServer int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.mu.Lock()
		// The client's stream opens with the 24-byte connection preface.
		fromClient += countPings(bytes.TrimPrefix(c.read.Bytes(), []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")))
		fromServer += countPings(c.written.Bytes())
		c.mu.Unlock()
	}
	return fromClient, fromServer
}

type recordedConn struct {
	net.Conn
	mu      sync.Mutex
	read    bytes.Buffer // what the client sent
	written bytes.Buffer // what the server sent
}

func (c *recordedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *recordedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.written.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// countPings walks HTTP/2 frames (RFC 9113 §4.1: a 24-bit length, a type,
// flags and a stream id, then the payload) and counts PING frames (type
// 0x6) without the ACK flag (0x1).
func countPings(stream []byte) int {
	const headerLen, typePing, flagAck = 9, 0x6, 0x1
	pings := 0
	for len(stream) >= headerLen {
		length := int(binary.BigEndian.Uint32(append([]byte{0}, stream[:3]...)))
		if stream[3] == typePing && stream[4]&flagAck == 0 {
			pings++
		}
		if headerLen+length > len(stream) {
			break
		}
		stream = stream[headerLen+length:]
	}
	return pings
}

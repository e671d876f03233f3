package server

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/chordkv/chordkv/internal/transport"
)

func TestWarnIfExposedPlaintext(t *testing.T) {
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7000}
	wild := &net.TCPAddr{IP: net.IPv4zero, Port: 7000}
	tls := transport.TLSFiles{Cert: "n.crt", Key: "n.key"}
	tests := []struct {
		name      string
		tls       transport.TLSFiles
		bound     net.Addr
		advertise string
		warn      bool
	}{
		{"loopback", transport.TLSFiles{}, loop, "127.0.0.1:7000", false},
		{"localhost", transport.TLSFiles{}, loop, "localhost:7000", false},
		{"ipv6 loopback", transport.TLSFiles{}, &net.TCPAddr{IP: net.IPv6loopback, Port: 7000}, "[::1]:7000", false},
		{"wildcard listen", transport.TLSFiles{}, wild, "127.0.0.1:7000", true},
		{"advertised name", transport.TLSFiles{}, loop, "n1:7000", true},
		{"TLS beyond loopback", tls, wild, "n1:7000", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			warnIfExposedPlaintext(slog.New(slog.NewTextHandler(&buf, nil)), tt.tls, tt.bound, tt.advertise)
			if got := strings.Contains(buf.String(), "WARNING"); got != tt.warn {
				t.Errorf("warned %v, want %v: %q", got, tt.warn, buf.String())
			}
		})
	}
}

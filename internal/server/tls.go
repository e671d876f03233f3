package server

import (
	"fmt"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/chordkv/chordkv/internal/transport"
)

// security is how the daemon talks: the server's credentials option (none
// for plain text) and the peer client's option.
type security struct {
	server []grpc.ServerOption
	client []transport.ClientOption
}

// loadSecurity reads the TLS files once. A node presents the same
// certificate as a server and as a client of its peers, and verifies peers
// against the same CA it verifies callers with.
func loadSecurity(f transport.TLSFiles) (security, error) {
	if !f.Enabled() {
		return security{}, nil
	}
	srv, err := f.ServerTLS()
	if err != nil {
		return security{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	cli, err := f.ClientTLS()
	if err != nil {
		return security{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return security{
		server: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(srv))},
		client: []transport.ClientOption{transport.WithTransportCredentials(credentials.NewTLS(cli))},
	}, nil
}

// warnIfExposedPlaintext logs a warning when a plain-text node listens or
// advertises beyond loopback. It does not refuse: the compose demo runs
// plain text between containers on purpose.
func warnIfExposedPlaintext(log *slog.Logger, f transport.TLSFiles, bound net.Addr, advertise string) {
	if f.Enabled() {
		return
	}
	listenHost, _, _ := net.SplitHostPort(bound.String())
	advertiseHost, _, _ := net.SplitHostPort(advertise)
	if isLoopbackHost(listenHost) && isLoopbackHost(advertiseHost) {
		return
	}
	log.Warn("WARNING: serving plain text beyond loopback; anyone who can reach this port can read and write every key and join the ring. Use --tls-cert, --tls-key and --tls-ca in production",
		"listen", bound.String(), "advertise", advertise)
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

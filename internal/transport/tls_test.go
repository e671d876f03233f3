package transport

import (
	"crypto/tls"
	"testing"

	"github.com/chordkv/chordkv/internal/tlstest"
)

func TestServerTLS(t *testing.T) {
	certs := tlstest.New(t)
	tests := []struct {
		name string
		f    TLSFiles
		auth tls.ClientAuthType
	}{
		{"server only", TLSFiles{Cert: certs.NodeCert, Key: certs.NodeKey}, tls.NoClientCert},
		{"mutual", TLSFiles{Cert: certs.NodeCert, Key: certs.NodeKey, CA: certs.CA}, tls.RequireAndVerifyClientCert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.f.ServerTLS()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tt.auth || len(cfg.Certificates) != 1 {
				t.Errorf("config: min version %x, client auth %v, %d certificates", cfg.MinVersion, cfg.ClientAuth, len(cfg.Certificates))
			}
		})
	}
	if _, err := (TLSFiles{CA: certs.CA}).ServerTLS(); err == nil {
		t.Error("a CA alone made a server config")
	}
}

package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// TLSFiles names the PEM files of a TLS setup, as given by --tls-cert,
// --tls-key and --tls-ca. The zero value means plain text.
type TLSFiles struct {
	// Cert and Key are this side's certificate chain and private key: a
	// node's serving (and peer client) certificate, or a client's.
	Cert, Key string
	// CA holds the certificates that sign the other side's certificate. On
	// a node it also turns on mutual TLS: every caller, peer or client,
	// must present a certificate it signed.
	CA string
}

// Enabled reports whether any TLS file is set.
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// minTLSVersion is TLS 1.2: Go negotiates 1.3 whenever both sides have it,
// and 1.2 keeps older tools such as grpc_health_probe builds working.
const minTLSVersion = tls.VersionTLS12

// checkPair refuses half a key pair, which would otherwise silently mean
// "no client certificate".
func (f TLSFiles) checkPair() error {
	switch {
	case f.Cert != "" && f.Key == "":
		return fmt.Errorf("TLS certificate %s given without its key (--tls-key)", f.Cert)
	case f.Key != "" && f.Cert == "":
		return fmt.Errorf("TLS key %s given without its certificate (--tls-cert)", f.Key)
	}
	return nil
}

func (f TLSFiles) loadPair() ([]tls.Certificate, error) {
	if f.Cert == "" {
		return nil, nil
	}
	c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	return []tls.Certificate{c}, nil
}

// loadCA reads the CA bundle; nil without one, which means the system roots
// on a client and no client certificates on a server.
func (f TLSFiles) loadCA() (*x509.CertPool, error) {
	if f.CA == "" {
		return nil, nil
	}
	b, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("TLS CA %s: no PEM certificate in it", f.CA)
	}
	return pool, nil
}

// ServerTLS is a node's server side: its own certificate and, with a CA,
// mutual TLS that refuses callers without a certificate the CA signed.
func (f TLSFiles) ServerTLS() (*tls.Config, error) {
	if err := f.checkPair(); err != nil {
		return nil, err
	}
	if f.Cert == "" {
		return nil, errors.New("a TLS node needs --tls-cert and --tls-key; --tls-ca alone cannot serve TLS")
	}
	certs, err := f.loadPair()
	if err != nil {
		return nil, err
	}
	ca, err := f.loadCA()
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: minTLSVersion, Certificates: certs}
	if ca != nil {
		cfg.ClientCAs = ca
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientTLS is the dialling side: it verifies the server against the CA
// (the system roots without one) and presents the certificate if given.
// The server name is left empty so that gRPC checks the certificate
// against the host part of each address dialled.
func (f TLSFiles) ClientTLS() (*tls.Config, error) {
	if err := f.checkPair(); err != nil {
		return nil, err
	}
	certs, err := f.loadPair()
	if err != nil {
		return nil, err
	}
	ca, err := f.loadCA()
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: minTLSVersion, Certificates: certs, RootCAs: ca}, nil
}

// ClientCredentials are the gRPC credentials for dialling: plain text when
// no TLS file is set, else ClientTLS.
func (f TLSFiles) ClientCredentials() (credentials.TransportCredentials, error) {
	if !f.Enabled() {
		return insecure.NewCredentials(), nil
	}
	cfg, err := f.ClientTLS()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

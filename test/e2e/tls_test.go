package e2e

import (
	"strings"
	"testing"

	"github.com/chordkv/chordkv/internal/tlstest"
)

// TestTLSRing runs a 3-process ring with mutual TLS between peers and
// clients: it converges, serves a put and a get through the CLI with a client
// certificate, and refuses a plain-text CLI with exit 4 and a hint at TLS.
func TestTLSRing(t *testing.T) {
	certs := tlstest.New(t)
	c := NewCluster(t, 3, 2)
	c.ExtraArgs = []string{"--tls-cert", certs.NodeCert, "--tls-key", certs.NodeKey, "--tls-ca", certs.CA}
	c.CLIArgs = []string{"--tls-cert", certs.ClientCert, "--tls-key", certs.ClientKey, "--tls-ca", certs.CA}
	for _, n := range c.Nodes {
		n.Start(t)
	}
	took := c.Eventually(t, "3 TLS processes converge to the oracle's ring", ringDeadline,
		func() error { return checkConverged(c, c.Nodes) })
	logTiming(t, "converge 3 TLS nodes", took)

	addrs := c.Addrs()
	if r := c.CLI("put", "greeting", "hello", "--endpoints", addrs[1], "--timeout", cliTimeout); r.Code != exitOK {
		t.Fatalf("put over TLS: %v", r)
	}
	if r := c.CLI("get", "greeting", "--endpoints", addrs[2], "--timeout", cliTimeout); r.Code != exitOK || r.Stdout != "hello" {
		t.Fatalf("get over TLS: %v", r)
	}

	// Without c.CLIArgs: plain text against a TLS node.
	r := runCLI(c.bin, nil, "get", "greeting", "--endpoints", addrs[0], "--timeout", cliTimeout)
	if r.Code != exitUnavailable || !strings.Contains(r.Stderr, addrs[0]) || !strings.Contains(r.Stderr, "TLS") {
		t.Errorf("plain-text get: want exit %d naming %s and TLS; got %v", exitUnavailable, addrs[0], r)
	}
}

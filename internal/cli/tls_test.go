package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/server"
	"github.com/chordkv/chordkv/internal/servertest"
	"github.com/chordkv/chordkv/internal/tlstest"
	"github.com/chordkv/chordkv/internal/transport"
)

// startTLSServer runs an in-process node serving mutual TLS with the node
// certificate of certs.
func startTLSServer(t *testing.T, certs tlstest.Files, join ...string) string {
	t.Helper()
	return servertest.Start(t, func(cfg *server.Config) {
		cfg.TLS = transport.TLSFiles{Cert: certs.NodeCert, Key: certs.NodeKey, CA: certs.CA}
	}, join...)
}

// TestTLSRing forms a ring whose peers talk mutual TLS and uses it through
// the CLI with a client certificate; clients without the right
// certificates are refused with exit 4 and a message about TLS.
func TestTLSRing(t *testing.T) {
	certs := tlstest.New(t)
	a := startTLSServer(t, certs)
	b := startTLSServer(t, certs, a)
	c := startTLSServer(t, certs, a)
	members := []string{a, b, c}
	withCert := []string{"--tls-ca", certs.CA, "--tls-cert", certs.ClientCert, "--tls-key", certs.ClientKey}

	deadline := time.Now().Add(15 * time.Second)
	for {
		r := runCLI(append([]string{"ring", "--endpoints", b, "-o", "json"}, withCert...)...)
		problem := fmt.Sprintf("exit %d: %s", r.code, r.stderr)
		if r.code == ExitOK {
			var rg ringJSON
			if err := json.Unmarshal([]byte(r.stdout), &rg); err != nil {
				t.Fatalf("ring json: %v\n%s", err, r.stdout)
			}
			problem = ringProblem(rg, members)
		}
		if problem == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS ring did not settle: %s", problem)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if r := runCLI(append([]string{"put", "greeting", "hello", "--endpoints", c}, withCert...)...); r.code != ExitOK {
		t.Fatalf("put: exit %d: %s", r.code, r.stderr)
	}
	// The environment works like the flags.
	env := envMap(map[string]string{"CHORDKV_TLS_CA": certs.CA, "CHORDKV_TLS_CERT": certs.ClientCert, "CHORDKV_TLS_KEY": certs.ClientKey})
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"get", "greeting", "--endpoints", a}, env, nil, &out, &errb)
	if code != ExitOK || !strings.Contains(out.String(), "hello") {
		t.Fatalf("get: exit %d: %s%s", code, out.String(), errb.String())
	}

	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"plain text", nil, "if the node serves TLS, pass --tls-ca"},
		{"server not verified", []string{"--tls-cert", certs.ClientCert, "--tls-key", certs.ClientKey}, "x509"},
		{"no client certificate", []string{"--tls-ca", certs.CA}, "check --tls-ca, --tls-cert and --tls-key"},
		{"client certificate from another CA", []string{"--tls-ca", certs.CA, "--tls-cert", certs.RogueCert, "--tls-key", certs.RogueKey}, "check --tls-ca, --tls-cert and --tls-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(append([]string{"get", "greeting", "--endpoints", a, "--timeout", "2s"}, tt.args...)...)
			if r.code != ExitUnavailable {
				t.Errorf("exit %d, want %d; stderr %q", r.code, ExitUnavailable, r.stderr)
			}
			if !strings.Contains(r.stderr, a) || !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr %q, want the address %s and %q", r.stderr, a, tt.wantStderr)
			}
		})
	}
}

func TestTLSFlagValidation(t *testing.T) {
	certs := tlstest.New(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	serve := func(args ...string) []string {
		return append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(t.TempDir(), "d")}, args...)
	}
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantStderr string
	}{
		{"cert without key", []string{"status", "--tls-cert", certs.ClientCert}, nil, certs.ClientCert},
		{"key without cert", []string{"status", "--tls-key", certs.ClientKey}, nil, certs.ClientKey},
		{"cert from env without key", []string{"status"}, map[string]string{"CHORDKV_TLS_CERT": certs.ClientCert}, "--tls-key"},
		{"missing CA", []string{"status", "--tls-ca", missing}, nil, missing},
		{"CA that is not PEM", []string{"health", "--tls-ca", garbage}, nil, garbage},
		{"cert that is not PEM", []string{"get", "k", "--tls-cert", garbage, "--tls-key", certs.ClientKey}, nil, garbage},
		{"key of another cert", []string{"put", "k", "v", "--tls-cert", certs.ClientCert, "--tls-key", certs.NodeKey}, nil, certs.NodeKey},
		{"serve with a CA only", serve("--tls-ca", certs.CA), nil, "--tls-cert"},
		{"serve with cert without key", serve("--tls-cert", certs.NodeCert), nil, certs.NodeCert},
		{"serve with a missing key", serve("--tls-cert", certs.NodeCert, "--tls-key", missing), nil, missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tt.args, envMap(tt.env), nil, &out, &errb)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr %q", code, ExitUsage, errb.String())
			}
			if !strings.HasPrefix(errb.String(), "chordkv: ") || !strings.Contains(errb.String(), tt.wantStderr) {
				t.Errorf("stderr %q, want \"chordkv: ...%s...\"", errb.String(), tt.wantStderr)
			}
		})
	}
}

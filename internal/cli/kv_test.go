package cli

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/ring"
)

// waitServing polls until a put through addr succeeds: the ring has formed
// far enough to place keys.
func waitServing(t *testing.T, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range addrs {
		for {
			r := runCLI("put", "probe", "x", "--endpoints", a, "--consistency", "all")
			if r.code == ExitOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never accepted a put: exit %d: %s", a, r.code, r.stderr)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// waitReady polls each node's status until it is ready: a member with a
// full, confirmed successor list. A put can succeed earlier, while a
// node's list still lacks the last joiner, and a key written then may have
// no copy on the node that owns it a moment later.
func waitReady(t *testing.T, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range addrs {
		for {
			r := runCLI("status", "--endpoints", a, "-o", "json")
			var st statusJSON
			if r.code == ExitOK && json.Unmarshal([]byte(r.stdout), &st) == nil && st.Ready {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never became ready: exit %d: %s%s", a, r.code, r.stdout, r.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// startRing starts three in-process nodes, waits until each is ready and
// serves keys, and returns their addresses and one where nothing listens.
func startRing(t *testing.T) (a, b, c, dead string) {
	t.Helper()
	a = startServer(t)
	b = startServer(t, a)
	c = startServer(t, a)
	waitReady(t, a, b, c)
	waitServing(t, a, b, c)
	return a, b, c, deadAddr(t)
}

func TestKeyCommandsAgainstARing(t *testing.T) {
	a, b, c, dead := startRing(t)

	// Text: put prints OK, get prints the raw value and nothing else.
	if r := runCLI("put", "greeting", "hello", "--endpoints", a); r.code != ExitOK || r.stdout != "OK\n" {
		t.Fatalf("put: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI("get", "greeting", "--endpoints", dead+","+b); r.code != ExitOK || r.stdout != "hello" {
		t.Fatalf("get with a dead first endpoint: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// JSON: the version put reports is the one get reports.
	r := runCLI("put", "greeting", "hi", "--endpoints", c, "-o", "json", "--consistency", "all")
	var put writeResultJSON
	if err := json.Unmarshal([]byte(r.stdout), &put); r.code != ExitOK || err != nil {
		t.Fatalf("put -o json: exit %d, %v: %q %q", r.code, err, r.stdout, r.stderr)
	}
	if put.Key != "greeting" || put.Version.HLC == 0 || !isNodeID(put.Version.Node, a, b, c) {
		t.Errorf("put json = %+v", put)
	}
	r = runCLI("get", "greeting", "--endpoints", a, "-o", "json", "--consistency", "one")
	var got getJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); r.code != ExitOK || err != nil {
		t.Fatalf("get -o json: exit %d, %v: %q %q", r.code, err, r.stdout, r.stderr)
	}
	if got.Key != "greeting" || string(got.Value) != "hi" || got.Version != put.Version {
		t.Errorf("get json = %+v, want value hi and version %+v", got, put.Version)
	}

	// A 1 MiB binary value from standard input comes back byte for byte.
	value := make([]byte, 1<<20)
	if _, err := rand.Read(value); err != nil {
		t.Fatal(err)
	}
	if r := runCLIWithInput(value, "put", "blob", "--endpoints", b); r.code != ExitOK {
		t.Fatalf("put 1 MiB from stdin: exit %d: %s", r.code, r.stderr)
	}
	if r := runCLI("get", "blob", "--endpoints", c); r.code != ExitOK || !bytes.Equal([]byte(r.stdout), value) {
		t.Fatalf("get 1 MiB: exit %d, %d bytes, equal=%v: %s", r.code, len(r.stdout), bytes.Equal([]byte(r.stdout), value), r.stderr)
	}

	// Delete, then the key is not found, from every node.
	r = runCLI("del", "greeting", "--endpoints", a, "-o", "json")
	var del writeResultJSON
	if err := json.Unmarshal([]byte(r.stdout), &del); r.code != ExitOK || err != nil || del.Version.HLC <= put.Version.HLC {
		t.Fatalf("del: exit %d, %v, %+v: %s", r.code, err, del, r.stderr)
	}
	for _, ep := range []string{a, b, c} {
		r := runCLI("get", "greeting", "--endpoints", ep)
		if r.code != ExitNotFound || r.stderr != "chordkv: not found: greeting\n" || r.stdout != "" {
			t.Errorf("get deleted key via %s: exit %d, stdout %q, stderr %q", ep, r.code, r.stdout, r.stderr)
		}
	}
	// Not found is an answer: no failover to the next endpoint, which is dead
	// and would turn it into "unavailable".
	if r := runCLI("get", "never-written", "--endpoints", a+","+dead); r.code != ExitNotFound {
		t.Errorf("get missing key: exit %d: %s", r.code, r.stderr)
	}

	tests := []struct {
		name   string
		stdin  []byte
		args   []string
		code   int
		stderr string
	}{
		{"empty key needs no node", nil, []string{"get", "", "--endpoints", dead}, ExitUsage, "key is empty"},
		{"empty key put", nil, []string{"put", "", "v", "--endpoints", dead}, ExitUsage, "key is empty"},
		{"long key", nil, []string{"put", strings.Repeat("k", 1025), "v", "--endpoints", a + "," + dead}, ExitUsage, "the limit is 1024 bytes (--max-key-bytes)"},
		{"long key get", nil, []string{"get", strings.Repeat("k", 1025), "--endpoints", b}, ExitUsage, "--max-key-bytes"},
		{"big value", make([]byte, 1<<20+1), []string{"put", "k", "--endpoints", c}, ExitUsage, "the limit is 1048576 bytes (--max-value-bytes)"},
		{"bad consistency", nil, []string{"get", "k", "--consistency", "most", "--endpoints", a}, ExitUsage, "--consistency"},
		{"no key", nil, []string{"del", "--endpoints", a}, ExitUsage, "arg"},
		{"too many args", nil, []string{"put", "k", "v", "w", "--endpoints", a}, ExitUsage, "arg"},
		{"only dead endpoints", nil, []string{"put", "k", "v", "--endpoints", dead, "--timeout", "300ms"}, ExitUnavailable, dead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLIWithInput(tt.stdin, tt.args...)
			if r.code != tt.code || !strings.HasPrefix(r.stderr, "chordkv: ") || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, tt.code, tt.stderr)
			}
		})
	}
	// The nodes keep serving after the refusals.
	if r := runCLI("get", "blob", "--endpoints", a); r.code != ExitOK || len(r.stdout) != len(value) {
		t.Errorf("get after refusals: exit %d: %s", r.code, r.stderr)
	}
}

func isNodeID(hex string, addrs ...string) bool {
	for _, a := range addrs {
		if ring.HashAddr(a).String() == hex {
			return true
		}
	}
	return false
}

func TestServeRefusesMoreReplicasThanSuccessors(t *testing.T) {
	r := runCLI("serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--successors", "2", "--replicas", "4")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--replicas 4") || !strings.Contains(r.stderr, "--successors") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI("serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--replicas", "0")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--replicas") {
		t.Errorf("replicas 0: exit %d, stderr %q", r.code, r.stderr)
	}
}

package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestHealth(t *testing.T) {
	a := startServer(t)
	b := startServer(t, a)

	// Readiness takes a few stabilize rounds; poll, bounded.
	var r result
	for deadline := time.Now().Add(10 * time.Second); ; {
		r = runCLI("health", "--endpoints", a+","+b, "--timeout", "2s")
		if r.code == ExitOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.code != ExitOK || strings.Count(r.stdout, "SERVING") != 2 {
		t.Fatalf("health of a ready ring: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = runCLI("health", "--endpoints", a, "-o", "json")
	var got []healthJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); r.code != ExitOK || err != nil {
		t.Fatalf("health -o json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if len(got) != 1 || got[0] != (healthJSON{Endpoint: a, Status: "SERVING"}) {
		t.Errorf("health -o json = %+v", got)
	}

	dead := deadAddr(t)
	tests := []struct {
		name string
		args []string
		code int
	}{
		// Every endpoint is asked: one dead endpoint fails the check even
		// when a live one comes first.
		{"dead endpoint", []string{"--endpoints", a + "," + dead}, ExitUnavailable},
		{"unknown service", []string{"--endpoints", a, "--service", "no.such.Service"}, ExitFailure},
		{"bad endpoint", []string{"--endpoints", "nohostport"}, ExitUsage},
		{"extra argument", []string{"--endpoints", a, "x"}, ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(append([]string{"health", "--timeout", "1s"}, tt.args...)...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", r.code, tt.code, r.stdout, r.stderr)
			}
		})
	}
}

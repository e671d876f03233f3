package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestBenchFlagValidation(t *testing.T) {
	// A dead endpoint: every case must fail before anything is dialled.
	dead := deadAddr(t)
	tests := []struct {
		name string
		args []string
		want string // in the error message
	}{
		{"bad op", []string{"--op", "scan"}, "--op"},
		{"ratio below 0", []string{"--op", "mixed", "--ratio", "-0.1"}, "--ratio"},
		{"ratio above 1", []string{"--op", "mixed", "--ratio", "1.5"}, "--ratio"},
		{"ratio NaN", []string{"--ratio", "NaN"}, "--ratio"},
		{"concurrency 0", []string{"--concurrency", "0"}, "--concurrency"},
		{"connections 0", []string{"--connections", "0"}, "--connections"},
		{"duration 0", []string{"--duration", "0s"}, "--duration"},
		{"keys 0", []string{"--keys", "0"}, "--keys"},
		{"negative value size", []string{"--value-size", "-1"}, "--value-size"},
		{"batch 0", []string{"--batch", "0"}, "--batch"},
		{"batch > 1 is not implemented", []string{"--batch", "8"}, "not implemented yet"},
		{"bad consistency", []string{"--consistency", "some"}, "--consistency"},
		{"bad output", []string{"-o", "yaml"}, "--output"},
		{"not a number", []string{"--concurrency", "many"}, "concurrency"},
		{"positional argument", []string{"extra"}, "arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"bench", "--endpoints", dead, "--duration", "1s"}, tt.args...)
			r := runCLI(args...)
			if r.code != ExitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, ExitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q does not mention %q", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

// TestBenchAgainstANode runs each op for about a second against an
// in-process node and checks the report is sane. No speed thresholds: the
// test machine's speed is not what is under test.
func TestBenchAgainstANode(t *testing.T) {
	a := startServer(t)
	waitServing(t, a)
	for _, op := range []string{benchGet, benchPut, benchMixed, benchDel} {
		t.Run(op, func(t *testing.T) {
			r := runCLI("bench", "--endpoints", a, "--op", op, "--duration", "1s", "--keys", "200",
				"--concurrency", "4", "--connections", "2", "--value-size", "64", "-o", "json")
			if r.code != ExitOK {
				t.Fatalf("exit %d: stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
			var fields map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &fields); err != nil {
				t.Fatalf("not JSON: %v: %q", err, r.stdout)
			}
			for _, k := range []string{"op", "ops_per_sec", "p50_ms", "p99_ms", "p999_ms", "errors"} {
				if _, ok := fields[k]; !ok {
					t.Errorf("report lacks %q: %s", k, r.stdout)
				}
			}
			var rep benchJSON
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Op != op || rep.OpsPerSec <= 0 || rep.Ops <= 0 || rep.Errors != 0 || rep.Interrupted {
				t.Errorf("report %+v: want op %s, ops/s > 0, no errors, not interrupted", rep, op)
			}
			if !(rep.P50Ms > 0 && rep.P50Ms <= rep.P99Ms && rep.P99Ms <= rep.P999Ms && rep.P999Ms <= rep.MaxMs) {
				t.Errorf("percentiles out of order: p50 %v p99 %v p99.9 %v max %v", rep.P50Ms, rep.P99Ms, rep.P999Ms, rep.MaxMs)
			}
			if rep.Seconds < 0.9 || rep.Seconds > 5 {
				t.Errorf("ran %v s, want about 1", rep.Seconds)
			}
			if wantPreload := op != benchPut; strings.Contains(r.stderr, "preloading") != wantPreload {
				t.Errorf("preload line present = %v, want %v; stderr %q", !wantPreload, wantPreload, r.stderr)
			}
		})
	}
}

func TestBenchTextReport(t *testing.T) {
	a := startServer(t)
	waitServing(t, a)
	r := runCLI("bench", "--endpoints", a, "--op", "mixed", "--ratio", "0.5", "--duration", "1s", "--keys", "50", "--concurrency", "2")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "OP") || !strings.HasPrefix(lines[1], "mixed") {
		t.Errorf("text report:\n%s", r.stdout)
	}
}

func TestBenchAllCallsFailing(t *testing.T) {
	// put needs no preload, so every call of the run fails: the report
	// still prints, and the exit code says the node was unavailable.
	r := runCLI("bench", "--endpoints", deadAddr(t), "--op", "put", "--duration", "300ms", "--timeout", "200ms", "--concurrency", "2", "-o", "json")
	if r.code != ExitUnavailable {
		t.Fatalf("exit %d, want %d: %s", r.code, ExitUnavailable, r.stderr)
	}
	var rep benchJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("no report: %v: %q", err, r.stdout)
	}
	if rep.Errors == 0 || rep.Ops != 0 || rep.FirstError == "" {
		t.Errorf("report %+v: want errors, no ops, a first error", rep)
	}
}

package cli

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		{"batch over the node cap", []string{"--op", "get", "--batch", "1001"}, "at most 1000"},
		{"negative rate", []string{"--rate", "-1"}, "--rate"},
		{"rate NaN", []string{"--rate", "NaN"}, "--rate"},
		{"rate infinite", []string{"--rate", "+Inf"}, "--rate"},
		{"bad routing", []string{"--routing", "owner"}, "--routing"},
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

// TestBenchRate checks that --rate caps the calls made, single and batched,
// and is reported. Only the cap is checked: a slow machine may fall short
// of the rate, and that is not what is under test.
func TestBenchRate(t *testing.T) {
	a := startServer(t)
	waitServing(t, a)
	for _, batch := range []string{"1", "10"} {
		t.Run("batch "+batch, func(t *testing.T) {
			r := runCLI("bench", "--endpoints", a, "--op", "put", "--rate", "100", "--batch", batch, "--duration", "1s",
				"--keys", "50", "--concurrency", "8", "-o", "json")
			if r.code != ExitOK {
				t.Fatalf("exit %d: stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
			var rep benchJSON
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
				t.Fatalf("not JSON: %v: %q", err, r.stdout)
			}
			// Calls are due at 0, 10 ms, ... ; in a run of s seconds at
			// most 100·s + 1 are due, plus one batch begun at the end.
			limit := int64(100*rep.Seconds) + 1 + 10
			if rep.Rate != 100 || rep.Ops <= 0 || rep.Ops > limit || rep.Errors != 0 {
				t.Errorf("report %+v: want rate 100, 0 < ops <= %d, no errors", rep, limit)
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

// TestBenchRoutingOnARing runs get and put for about a second with each
// routing against a settled 3-node ring. With client routing, calls go
// straight to the owner: in steady state no node says it forwarded one
// (chordkv-owner), and none falls back to --endpoints.
func TestBenchRoutingOnARing(t *testing.T) {
	a := startServer(t)
	b := startServer(t, a)
	c := startServer(t, a)
	waitSettled(t, []string{a, b, c})
	waitServing(t, a, b, c)
	for _, routing := range []string{routingClient, routingEndpoint} {
		for _, op := range []string{benchGet, benchPut, benchMixed, benchDel} {
			t.Run(routing+"/"+op, func(t *testing.T) {
				r := runCLI("bench", "--endpoints", a, "--routing", routing, "--op", op, "--duration", "1s", "--keys", "300",
					"--concurrency", "8", "--connections", "2", "--value-size", "100", "-o", "json")
				if r.code != ExitOK {
					t.Fatalf("exit %d: stdout %q stderr %q", r.code, r.stdout, r.stderr)
				}
				var rep benchJSON
				if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
					t.Fatalf("not JSON: %v: %q", err, r.stdout)
				}
				if rep.Routing != routing || rep.Ops <= 0 || rep.Errors != 0 || rep.Fallbacks != 0 {
					t.Errorf("report %+v: want routing %s, ops, no errors, no fallbacks", rep, routing)
				}
				switch {
				// A ring that settled before the run has no reason to move
				// ranges during it; allow a stray redirect or two.
				case routing == routingClient && rep.Redirects*100 > rep.Ops:
					t.Errorf("client routing: %d of %d calls redirected", rep.Redirects, rep.Ops)
				// Through one endpoint, about 2/3 of the keys are another
				// node's: the header must show it.
				case routing == routingEndpoint && (rep.Redirects == 0 || rep.Redirects > rep.Ops):
					t.Errorf("endpoint routing: %d of %d calls redirected, want about 2/3", rep.Redirects, rep.Ops)
				}
				if routing == routingClient && !strings.Contains(r.stderr, "client routing over 3 ring members") {
					t.Errorf("stderr %q does not report the ring walk", r.stderr)
				}
			})
		}
	}
}

// waitSettled polls `chordkv ring` until it lists exactly addrs with
// consistent pointers.
func waitSettled(t *testing.T, addrs []string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := runCLI("ring", "--endpoints", addrs[0], "-o", "json")
		problem := fmt.Sprintf("exit %d: %s", r.code, r.stderr)
		if r.code == ExitOK {
			var rg ringJSON
			if err := json.Unmarshal([]byte(r.stdout), &rg); err != nil {
				t.Fatalf("ring json: %v\n%s", err, r.stdout)
			}
			problem = ringProblem(rg, addrs)
		}
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ring did not settle: %s", problem)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBenchBatchOnARing runs batched get and put for about a second with
// each routing against a settled 3-node ring: every key of every batch
// must succeed, and the report must say keys are counted and latency is
// per RPC.
func TestBenchBatchOnARing(t *testing.T) {
	a := startServer(t)
	b := startServer(t, a)
	c := startServer(t, a)
	waitSettled(t, []string{a, b, c})
	waitServing(t, a, b, c)
	for _, routing := range []string{routingClient, routingEndpoint} {
		for _, op := range []string{benchGet, benchPut, benchMixed, benchDel} {
			t.Run(routing+"/"+op, func(t *testing.T) {
				r := runCLI("bench", "--endpoints", a, "--routing", routing, "--op", op, "--batch", "16", "--duration", "1s",
					"--keys", "300", "--concurrency", "4", "--connections", "2", "--value-size", "100", "-o", "json")
				if r.code != ExitOK {
					t.Fatalf("exit %d: stdout %q stderr %q", r.code, r.stdout, r.stderr)
				}
				var rep benchJSON
				if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
					t.Fatalf("not JSON: %v: %q", err, r.stdout)
				}
				if rep.Routing != routing || rep.Ops <= 0 || rep.Errors != 0 || rep.Fallbacks != 0 || rep.FirstError != "" {
					t.Errorf("report %+v: want routing %s, ops, no errors, no fallbacks", rep, routing)
				}
				if rep.Batch != 16 || rep.LatencyPer != "rpc" {
					t.Errorf("batch %d, latency_per %q; want 16 and rpc", rep.Batch, rep.LatencyPer)
				}
				if !(rep.P50Ms > 0 && rep.P50Ms <= rep.P99Ms && rep.P99Ms <= rep.MaxMs) {
					t.Errorf("percentiles out of order: p50 %v p99 %v max %v", rep.P50Ms, rep.P99Ms, rep.MaxMs)
				}
			})
		}
	}
	// Unbatched runs say their latency is per operation.
	r := runCLI("bench", "--endpoints", a, "--op", "get", "--duration", "300ms", "--keys", "20", "--concurrency", "1", "-o", "json")
	var rep benchJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != ExitOK || err != nil || rep.LatencyPer != "op" || rep.Batch != 1 {
		t.Errorf("unbatched: exit %d, %v, batch %d latency_per %q", r.code, err, rep.Batch, rep.LatencyPer)
	}
}

// TestBenchCPUProfile checks that --cpuprofile leaves a pprof profile (a
// gzipped protobuf) of the measured run, and that a path it cannot create
// fails the command before anything is dialled or preloaded.
func TestBenchCPUProfile(t *testing.T) {
	a := startServer(t)
	waitServing(t, a)
	t.Run("written", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bench.pprof")
		r := runCLI("bench", "--endpoints", a, "--op", "get", "--duration", "1s", "--keys", "100",
			"--concurrency", "4", "--cpuprofile", path, "-o", "json")
		if r.code != ExitOK {
			t.Fatalf("exit %d: stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s is not a gzipped profile: %v", path, err)
		}
		body, err := io.ReadAll(zr)
		if err != nil || len(body) == 0 {
			t.Fatalf("%s: %d bytes after gunzip, err %v; want a profile", path, len(body), err)
		}
	})
	t.Run("unwritable path", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "no-such-dir", "bench.pprof")
		r := runCLI("bench", "--endpoints", a, "--op", "get", "--duration", "1s", "--keys", "100", "--cpuprofile", path)
		if r.code != ExitFailure || !strings.Contains(r.stderr, "--cpuprofile") || strings.Contains(r.stderr, "preloading") || r.stdout != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d naming --cpuprofile, before any preload", r.code, r.stdout, r.stderr, ExitFailure)
		}
	})
}

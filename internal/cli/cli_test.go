package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/servertest"
	"github.com/chordkv/chordkv/internal/testnet"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{
		"endpoints": "CHORDKV_ENDPOINTS",
		"data-dir":  "CHORDKV_DATA_DIR",
		"output":    "CHORDKV_OUTPUT",
	} {
		if got := envName(flag); got != want {
			t.Errorf("envName(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestBindEnv(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		want     string // "endpoints|timeout|data-dir|successors"
		wantCode int
	}{
		{"defaults", nil, nil, "127.0.0.1:7000|3s||8", ExitOK},
		{"env fills flags", nil, map[string]string{
			"CHORDKV_ENDPOINTS": "a:1,b:2", "CHORDKV_TIMEOUT": "5s", "CHORDKV_DATA_DIR": "/d", "CHORDKV_SUCCESSORS": "4",
		}, "a:1,b:2|5s|/d|4", ExitOK},
		{"explicit flag wins", []string{"--endpoints", "c:3", "--data-dir", "/x"}, map[string]string{
			"CHORDKV_ENDPOINTS": "a:1", "CHORDKV_DATA_DIR": "/d",
		}, "c:3|3s|/x|8", ExitOK},
		{"bad env value is a usage error", nil, map[string]string{"CHORDKV_SUCCESSORS": "many"}, "", ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			root := &cobra.Command{Use: "x", SilenceErrors: true, SilenceUsage: true,
				PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return bindEnv(cmd, envMap(tt.env)) }}
			eps := root.PersistentFlags().StringSlice("endpoints", []string{"127.0.0.1:7000"}, "")
			timeout := root.PersistentFlags().Duration("timeout", 3*time.Second, "")
			sub := &cobra.Command{Use: "serve", RunE: func(cmd *cobra.Command, _ []string) error {
				dir, _ := cmd.Flags().GetString("data-dir")
				r, _ := cmd.Flags().GetInt("successors")
				got = fmt.Sprintf("%s|%v|%s|%d", strings.Join(*eps, ","), *timeout, dir, r)
				return nil
			}}
			sub.Flags().String("data-dir", "", "")
			sub.Flags().Int("successors", 8, "")
			root.AddCommand(sub)
			root.SetArgs(append([]string{"serve"}, tt.args...))
			err := root.Execute()
			if code := exitCode(err); code != tt.wantCode {
				t.Fatalf("exit code %d (%v), want %d", code, err, tt.wantCode)
			}
			if err != nil && !strings.Contains(err.Error(), "CHORDKV_SUCCESSORS") {
				t.Errorf("error %q does not name the variable", err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"plain", errors.New("x"), ExitFailure},
		{"usage", usageErrorf("bad"), ExitUsage},
		{"wrapped usage", fmt.Errorf("ctx: %w", usageErrorf("bad")), ExitUsage},
		{"explicit unavailable", withExitCode(ExitUnavailable, errors.New("x")), ExitUnavailable},
		{"grpc invalid argument", &nodeError{addr: "a:1", err: status.Error(codes.InvalidArgument, "x")}, ExitUsage},
		{"grpc not found", status.Error(codes.NotFound, "x"), ExitNotFound},
		{"grpc unavailable", status.Error(codes.Unavailable, "x"), ExitUnavailable},
		{"grpc deadline", status.Error(codes.DeadlineExceeded, "x"), ExitUnavailable},
		{"grpc internal", status.Error(codes.Internal, "x"), ExitFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// TestJSONShapes pins the -o json field names scripts depend on.
func TestJSONShapes(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"ring", ringJSON{Nodes: []ringNodeJSON{{ID: "ab", Addr: "a:1", Predecessor: "b:2", Successors: []string{"b:2"}}}},
			`{"nodes":[{"id":"ab","addr":"a:1","predecessor":"b:2","successors":["b:2"]}]}`},
		{"lookup", lookupJSON{Key: "k", ID: "ab", Owner: "a:1", Hops: 2, Path: []string{"b:2", "a:1"}},
			`{"key":"k","id":"ab","owner":"a:1","hops":2,"path":["b:2","a:1"]}`},
		{"get", getJSON{Key: "k", Value: []byte{0, 0xff}, Version: kvVersionJSON{HLC: 7, Node: "ab"}},
			`{"key":"k","value":"AP8=","version":{"hlc":7,"node":"ab"}}`},
		{"put and del", writeResultJSON{Key: "k", Version: kvVersionJSON{HLC: 7, Node: "ab"}},
			`{"key":"k","version":{"hlc":7,"node":"ab"}}`},
		{"status", statusJSON{ID: "ab", Addr: "a:1", Predecessor: "", Successors: []string{}, Fingers: []string{}, Member: true, Ready: false},
			`{"id":"ab","addr":"a:1","predecessor":"","successors":[],"fingers":[],"member":true,"ready":false,"synced":false,"stored_keys":0,"stored_tombstones":0,"stored_bytes":0,"read_lease":{"held":false,"from":"","to":"","grantors":null,"remaining_ms":0,"renewing":false},"leases_granted":0}`},
		{"status with a lease", newStatusJSON(&pb.StatusResponse{Id: "ab", Addr: "a:1", LeasesGranted: 2, ReadLeaseRenewing: true,
			ReadLease: &pb.ReadLease{From: "aa", To: "ab", Grantors: []string{"b:2", "c:3"}, RemainingMs: 1500}}),
			`{"id":"ab","addr":"a:1","predecessor":"","successors":[],"fingers":[],"member":false,"ready":false,"synced":false,"stored_keys":0,"stored_tombstones":0,"stored_bytes":0,"read_lease":{"held":true,"from":"aa","to":"ab","grantors":["b:2","c:3"],"remaining_ms":1500,"renewing":true},"leases_granted":2}`},
		{"status without a lease", newStatusJSON(&pb.StatusResponse{Id: "ab", Addr: "a:1"}),
			`{"id":"ab","addr":"a:1","predecessor":"","successors":[],"fingers":[],"member":false,"ready":false,"synced":false,"stored_keys":0,"stored_tombstones":0,"stored_bytes":0,"read_lease":{"held":false,"from":"","to":"","grantors":[],"remaining_ms":0,"renewing":false},"leases_granted":0}`},
		{"status renewing a lease not granted", newStatusJSON(&pb.StatusResponse{Id: "ab", Addr: "a:1", ReadLeaseRenewing: true}),
			`{"id":"ab","addr":"a:1","predecessor":"","successors":[],"fingers":[],"member":false,"ready":false,"synced":false,"stored_keys":0,"stored_tombstones":0,"stored_bytes":0,"read_lease":{"held":false,"from":"","to":"","grantors":[],"remaining_ms":0,"renewing":true},"leases_granted":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got  %s\nwant %s", b, tt.want)
			}
			back := reflect.New(reflect.TypeOf(tt.v))
			if err := json.Unmarshal(b, back.Interface()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.Elem().Interface(), tt.v) {
				t.Errorf("round trip: got %+v, want %+v", back.Elem().Interface(), tt.v)
			}
		})
	}
}

// startServer runs an in-process node on a loopback port.
func startServer(t *testing.T, join ...string) string {
	t.Helper()
	return servertest.Start(t, nil, join...)
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(args ...string) result {
	return runCLIWithInput(nil, args...)
}

func runCLIWithInput(stdin []byte, args ...string) result {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, envMap(nil), bytes.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func TestClientCommandsAgainstARing(t *testing.T) {
	a := startServer(t)
	b := startServer(t, a)
	c := startServer(t, a)
	members := []string{a, b, c}

	// Poll until the ring has settled: three members, each the
	// predecessor of the next, with full two-entry successor lists.
	var rg ringJSON
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := runCLI("ring", "--endpoints", b, "-o", "json")
		problem := fmt.Sprintf("exit %d: %s", r.code, r.stderr)
		if r.code == ExitOK {
			rg = ringJSON{}
			if err := json.Unmarshal([]byte(r.stdout), &rg); err != nil {
				t.Fatalf("ring json: %v\n%s", err, r.stdout)
			}
			problem = ringProblem(rg, members)
		}
		if problem == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ring did not settle: %s", problem)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rg.Nodes[0].Addr != b {
		t.Errorf("ring walk started at %s, want the endpoint %s", rg.Nodes[0].Addr, b)
	}

	// A dead first endpoint is skipped.
	dead := deadAddr(t)
	r := runCLI("lookup", "hello", "--endpoints", dead+","+a, "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("lookup: exit %d: %s", r.code, r.stderr)
	}
	var lk lookupJSON
	if err := json.Unmarshal([]byte(r.stdout), &lk); err != nil {
		t.Fatal(err)
	}
	if lk.Key != "hello" || lk.ID != ring.HashKey([]byte("hello")).String() || !slices.Contains(members, lk.Owner) ||
		lk.Path[0] != a || lk.Path[len(lk.Path)-1] != lk.Owner || lk.Hops != len(lk.Path)-1 {
		t.Errorf("lookup = %+v", lk)
	}

	// Readiness follows correct pointers by one stabilize (the successor
	// has to confirm the list), so poll for it too.
	var st statusJSON
	for deadline := time.Now().Add(10 * time.Second); ; {
		r = runCLI("status", "--endpoints", c, "-o", "json")
		st = statusJSON{}
		if err := json.Unmarshal([]byte(r.stdout), &st); r.code != ExitOK || err != nil {
			t.Fatalf("status: exit %d, %v: %s", r.code, err, r.stderr)
		}
		if (st.Ready && st.Synced) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Addr != c || !st.Member || !st.Ready || !st.Synced || len(st.Successors) != 2 {
		t.Errorf("status = %+v", st)
	}
	if r := runCLI("status", "--endpoints", c); r.code != ExitOK || !strings.Contains(r.stdout, c) {
		t.Errorf("text status: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI("ring", "--endpoints", c); r.code != ExitOK || strings.Count(r.stdout, "\n") != 4 {
		t.Errorf("text ring: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
}

// ringProblem says what is wrong with a ring listing, or "" if it lists
// exactly members in ring order with consistent pointers.
func ringProblem(rg ringJSON, members []string) string {
	var got []string
	for i, n := range rg.Nodes {
		got = append(got, n.Addr)
		if n.ID != ring.HashAddr(n.Addr).String() {
			return fmt.Sprintf("node %s: id %s is not its hash", n.Addr, n.ID)
		}
		next := rg.Nodes[(i+1)%len(rg.Nodes)]
		if len(n.Successors) != len(members)-1 || n.Successors[0] != next.Addr || next.Predecessor != n.Addr {
			return fmt.Sprintf("pointers between %s and %s: %+v", n.Addr, next.Addr, rg)
		}
	}
	slices.Sort(got)
	if want := slices.Sorted(slices.Values(members)); !slices.Equal(got, want) {
		return fmt.Sprintf("members %v, want %v", got, want)
	}
	return ""
}

// deadAddr is an address nothing listens on, and that no node of another
// test package is given meanwhile (see testnet).
func deadAddr(t *testing.T) string {
	t.Helper()
	return testnet.Addr(t)
}

func TestClientCommandErrors(t *testing.T) {
	dead := deadAddr(t)
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"dead endpoint", []string{"status", "--endpoints", dead, "--timeout", "500ms"}, ExitUnavailable, dead},
		{"bad output", []string{"status", "-o", "yaml"}, ExitUsage, "--output"},
		{"unknown command", []string{"frobnicate"}, ExitUsage, "unknown command"},
		{"unknown flag", []string{"status", "--nope"}, ExitUsage, "--nope"},
		{"lookup without key", []string{"lookup"}, ExitUsage, "arg"},
		{"bad endpoint", []string{"status", "--endpoints", "nohostport"}, ExitUsage, "nohostport"},
		{"serve without data dir", []string{"serve"}, ExitUsage, "--data-dir"},
		{"serve on wildcard without advertise", []string{"serve", "--addr", "0.0.0.0:0", "--data-dir", t.TempDir()}, ExitUsage, "--advertise"},
		{"serve with a negative sync interval", []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--wal-min-sync-interval", "-1ms"}, ExitUsage, "--wal-min-sync-interval must be between 0 and 100ms, not -1ms"},
		{"serve with a negative lease idle", []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--read-lease-idle", "-1s"}, ExitUsage, "--read-lease-idle must be 0 (renew always) or at least --read-lease (1s), not -1s"},
		{"serve with a lease idle shorter than the lease", []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--read-lease", "2s", "--read-lease-idle", "500ms"}, ExitUsage, "--read-lease-idle must be 0 (renew always) or at least --read-lease (2s), not 500ms"},
		{"serve with a sync interval in seconds", []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--wal-min-sync-interval", "250s"}, ExitUsage, "--wal-min-sync-interval must be between 0 and 100ms, not 4m10s"},
		{"serve with a tiny cache", []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--cache-bytes", "1000"}, ExitUsage, "--cache-bytes must be at least 1048576"},
		{"serve with no collector target", []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--gc-percent", "0"}, ExitUsage, "--gc-percent must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %q", r.code, tt.wantCode, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "chordkv: ") || !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr %q, want \"chordkv: ...%s...\"", r.stderr, tt.wantStderr)
			}
		})
	}
}

// Every command, the generated completion commands included, shows an
// example in its --help.
func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() != "help" && c.Example == "" {
			t.Errorf("%q has no example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := newRootCmd(envMap(nil))
	root.SetOut(io.Discard)
	initCompletion(root)
	walk(root)
}

func TestCompletionScripts(t *testing.T) {
	for shell, marker := range map[string]string{"bash": "bash completion", "zsh": "#compdef chordkv", "fish": "fish completion"} {
		r := runCLI("completion", shell)
		if r.code != ExitOK || !strings.Contains(r.stdout, marker) {
			t.Errorf("completion %s: exit %d, stdout starts %.80q, stderr %q", shell, r.code, r.stdout, r.stderr)
		}
	}
}

func TestGCPercentToSet(t *testing.T) {
	tests := []struct {
		name      string
		flagGiven bool
		flag      int
		gogc      string
		want      int
	}{
		{"nothing set: serve's default", false, defaultGCPercent, "", defaultGCPercent},
		{"GOGC set: the runtime applied it", false, defaultGCPercent, "50", 0},
		{"GOGC=off is the operator's too", false, defaultGCPercent, "off", 0},
		{"the flag wins over GOGC", true, 300, "50", 300},
		{"the flag alone", true, 150, "", 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gcPercentToSet(tt.flagGiven, tt.flag, tt.gogc); got != tt.want {
				t.Errorf("gcPercentToSet(%v, %d, %q) = %d, want %d", tt.flagGiven, tt.flag, tt.gogc, got, tt.want)
			}
		})
	}
}

func TestLeaseText(t *testing.T) {
	tests := []struct {
		lease readLeaseJSON
		want  string
	}{
		{readLeaseJSON{}, "none"},
		{readLeaseJSON{Renewing: true}, "none; renewing, not granted yet"},
		{readLeaseJSON{Held: true, From: "aa", To: "ab", Grantors: []string{"b:2", "c:3"}, RemainingMS: 1500, Renewing: true},
			"(aa, ab] for 1.5s more, granted by b:2,c:3"},
		{readLeaseJSON{Held: true, From: "aa", To: "ab", Grantors: []string{"b:2", "c:3"}, RemainingMS: 1500},
			"(aa, ab] for 1.5s more, granted by b:2,c:3; idle, not renewed"},
	}
	for _, tt := range tests {
		if got := leaseText(tt.lease); got != tt.want {
			t.Errorf("leaseText(%+v) = %q, want %q", tt.lease, got, tt.want)
		}
	}
}

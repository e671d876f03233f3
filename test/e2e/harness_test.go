package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/testnet"
)

// Bounds used throughout. None of them is a speed requirement: they only
// turn a hang into a failure with a message.
const (
	// cliTimeout is the CLI's own --timeout for reaching an endpoint.
	cliTimeout = "2s"
	// cliDeadline bounds one CLI process, whatever it does.
	cliDeadline = 20 * time.Second
	// ringDeadline bounds convergence and healing.
	ringDeadline = 60 * time.Second
	// stopGrace is how long a node may take to exit after SIGTERM or SIGKILL.
	stopGrace = 10 * time.Second
	// pollInterval is the pause between two attempts of a polled check.
	pollInterval = 200 * time.Millisecond
	// logTail is how much of each node's log a failed test prints.
	logTail = 32 << 10
)

// chordkvBin returns the binary under test, or skips the test when
// CHORDKV_BIN is unset. A CHORDKV_BIN that names no executable is an error,
// not a reason to skip.
func chordkvBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("CHORDKV_BIN")
	if bin == "" {
		t.Skip("CHORDKV_BIN is not set: end-to-end tests need a built chordkv binary; " +
			"run `make e2e`, or `make build` then `CHORDKV_BIN=$PWD/bin/chordkv go test ./test/e2e/`")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatalf("CHORDKV_BIN=%q: %v", bin, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		t.Fatalf("CHORDKV_BIN=%q: %v", bin, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("CHORDKV_BIN=%q is not an executable file", bin)
	}
	return abs
}

// freeAddrs returns n distinct 127.0.0.1 addresses that were free a moment
// ago and that no other call in this process returns. They lie below the
// kernel's ephemeral range (see testnet), so that neither a port-0 listener
// nor a connection's local end takes one while its node is down: a node's
// address came back as another node's metrics address once, when they
// were picked with port 0.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	return testnet.Addrs(t, n)
}

// childEnv is the environment for every chordkv process: the test's own,
// minus CHORDKV_* variables, so that a developer's settings cannot change
// what the tests run.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHORDKV_") {
			env = append(env, kv)
		}
	}
	return env
}

// Cluster is a set of chordkv processes started by one test. Its cleanup
// stops every node (SIGTERM, then SIGKILL after stopGrace) and, when the
// test failed, prints each node's log.
//
// Methods that can fail the test take the testing.TB of the (sub)test that
// calls them: FailNow must run on that test's goroutine.
type Cluster struct {
	t     testing.TB // the test that owns the cluster, for cleanup
	bin   string
	dir   string
	Nodes []*Node
	// Successors is passed as --successors to every node (0: the default).
	Successors int
	// ExtraArgs are appended to every node's serve arguments.
	ExtraArgs []string
	// CLIArgs are appended to every CLI invocation through CLI,
	// CLIWithInput and the queries, e.g. TLS flags.
	CLIArgs []string
}

// NewCluster prepares n nodes on free ports without starting them. Node 0
// creates the ring; the others join through it.
func NewCluster(t testing.TB, n int, successors int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: chordkvBin(t), dir: t.TempDir(), Successors: successors}
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(c.cleanup)
	for i, addr := range freeAddrs(t, n) {
		node := c.AddNode(addr)
		if i > 0 {
			node.Join = []string{c.Nodes[0].Addr}
		}
	}
	return c
}

// AddNode prepares one more node on addr, not started, with no --join.
func (c *Cluster) AddNode(addr string) *Node {
	name := fmt.Sprintf("n%d", len(c.Nodes))
	node := &Node{
		c:       c,
		Name:    name,
		Addr:    addr,
		DataDir: filepath.Join(c.dir, name),
		LogPath: filepath.Join(c.dir, name+".log"),
	}
	c.Nodes = append(c.Nodes, node)
	return node
}

// StartCluster prepares n nodes and starts them all at once: joiners must
// keep retrying until the first node answers.
func StartCluster(t testing.TB, n int, successors int) *Cluster {
	t.Helper()
	c := NewCluster(t, n, successors)
	for _, node := range c.Nodes {
		node.Start(t)
	}
	return c
}

// Addrs lists the addresses of the given nodes, or of all nodes when none
// are given.
func (c *Cluster) Addrs(nodes ...*Node) []string {
	if len(nodes) == 0 {
		nodes = c.Nodes
	}
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Addr
	}
	return out
}

// Node returns the node listening on addr.
func (c *Cluster) Node(t testing.TB, addr string) *Node {
	t.Helper()
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	t.Fatalf("no node at %s", addr)
	return nil
}

// adjacentPair returns two nodes that are neighbours on the ring (in SHA-1
// order), neither of them avoid: what killing "two adjacent nodes" means.
func (c *Cluster) adjacentPair(t testing.TB, avoid *Node) []*Node {
	t.Helper()
	order := newRingOracle(c.Addrs(), c.Successors).order()
	for i := range order {
		a, b := c.Node(t, order[i]), c.Node(t, order[(i+1)%len(order)])
		if a != avoid && b != avoid {
			return []*Node{a, b}
		}
	}
	t.Fatalf("no two neighbours on the ring avoid %s", avoid.Addr)
	return nil
}

// unexpectedExit reports a node that died although the harness did not stop
// it, so that polls fail at once with the reason instead of at their
// deadline.
func (c *Cluster) unexpectedExit() error {
	for _, n := range c.Nodes {
		if err := n.exitedUnexpectedly(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) cleanup() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Go(func() {
			if n.Running() {
				if err := n.Stop(); err != nil {
					c.t.Logf("cleanup: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if c.t.Failed() {
		c.DumpLogs()
	}
}

// DumpLogs prints the end of every node's log.
func (c *Cluster) DumpLogs() {
	for _, n := range c.Nodes {
		b, err := os.ReadFile(n.LogPath)
		if err != nil {
			c.t.Logf("---- %s %s: no log: %v", n.Name, n.Addr, err)
			continue
		}
		note := ""
		if len(b) > logTail {
			b = b[len(b)-logTail:]
			note = fmt.Sprintf(" (last %d bytes)", logTail)
		}
		c.t.Logf("---- %s %s log%s ----\n%s", n.Name, n.Addr, note, b)
	}
}

// Node is one chordkv serve process; it can be killed and started again on
// the same address with the same data directory.
type Node struct {
	c       *Cluster
	Name    string
	Addr    string
	DataDir string
	LogPath string
	Join    []string
	// ExtraArgs are appended to this node's serve arguments, after the
	// cluster's.
	ExtraArgs []string

	mu   sync.Mutex
	proc *process // current or last incarnation; nil before the first Start
}

type process struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	err      error         // what Wait returned; read after done is closed
	stopping bool          // the harness signalled it; exiting is expected
}

// Args are the serve arguments, the same for every incarnation.
func (n *Node) Args() []string {
	args := []string{"serve",
		"--addr", n.Addr,
		"--data-dir", n.DataDir,
		// No --stabilize-interval: the timings these tests log are the
		// ones docs/benchmarks.md reports, at the default interval.
	}
	if len(n.Join) > 0 {
		args = append(args, "--join", strings.Join(n.Join, ","))
	}
	if n.c.Successors > 0 {
		args = append(args, "--successors", fmt.Sprint(n.c.Successors))
	}
	args = append(args, n.c.ExtraArgs...)
	args = append(args, n.ExtraArgs...)
	// E2E_SERVE_ARGS runs the whole suite under other serve settings
	// (`make e2e E2E_SERVE_ARGS='--read-lease 0'`); later flags win.
	return append(args, strings.Fields(os.Getenv("E2E_SERVE_ARGS"))...)
}

// serveArgsReadLease is the --read-lease E2E_SERVE_ARGS gives every node,
// if it gives one (set), for the tests that need leases on or off: it wins
// over theirs.
func serveArgsReadLease() (lease time.Duration, set bool) {
	args := strings.Fields(strings.ReplaceAll(os.Getenv("E2E_SERVE_ARGS"), "=", " "))
	i := slices.Index(args, "--read-lease")
	if i < 0 || i+1 >= len(args) {
		return 0, false
	}
	d, err := time.ParseDuration(args[i+1])
	return d, err == nil
}

// Start launches a new incarnation. Output of every incarnation is appended
// to LogPath, after a header line.
func (n *Node) Start(t testing.TB) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.exited() {
		t.Fatalf("%s %s: start: still running", n.Name, n.Addr)
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("%s: open log: %v", n.Name, err)
	}
	args := n.Args()
	fmt.Fprintf(logf, "=== %s e2e: %s %s\n", time.Now().Format(time.RFC3339Nano), n.c.bin, strings.Join(args, " "))
	cmd := exec.Command(n.c.bin, args...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("%s: start %s: %v", n.Name, n.c.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	n.proc = p
}

// Running reports whether the current incarnation is up and not being
// stopped by the harness.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil && !n.proc.stopping && !n.proc.exited()
}

// Kill sends SIGKILL and waits for the process to be gone.
func (n *Node) Kill(t testing.TB) {
	t.Helper()
	if err := n.signalAndWait(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// Pause stops the process with SIGSTOP, as a long GC pause or a stalled VM
// would: its connections stay open and nothing answers until Resume.
func (n *Node) Pause(t testing.TB) { n.signal(t, syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume(t testing.TB) { n.signal(t, syscall.SIGCONT) }

func (n *Node) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil || p.exited() {
		t.Fatalf("%s %s: %v: not running", n.Name, n.Addr, sig)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s %s: %v: %v", n.Name, n.Addr, sig, err)
	}
}

// Stop sends SIGTERM and waits up to stopGrace for a clean exit; a node still
// running then is killed. The error says what went wrong: no timely exit, or
// a non-zero exit status.
func (n *Node) Stop() error {
	err := n.signalAndWait(syscall.SIGTERM)
	if err != nil && n.signalAndWait(syscall.SIGKILL) != nil {
		return fmt.Errorf("%w; SIGKILL did not end it either", err)
	}
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc.err != nil {
		return fmt.Errorf("%s %s: after SIGTERM: %v", n.Name, n.Addr, n.proc.err)
	}
	return nil
}

// signalAndWait signals the current incarnation and waits up to stopGrace
// for it to exit.
func (n *Node) signalAndWait(sig syscall.Signal) error {
	n.mu.Lock()
	p := n.proc
	if p == nil {
		n.mu.Unlock()
		return fmt.Errorf("%s %s: never started", n.Name, n.Addr)
	}
	p.stopping = true
	n.mu.Unlock()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s %s: %v: %w", n.Name, n.Addr, sig, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
		return fmt.Errorf("%s %s: still running %v after %v", n.Name, n.Addr, stopGrace, sig)
	}
}

func (n *Node) exitedUnexpectedly() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.proc.stopping || !n.proc.exited() {
		return nil
	}
	return fmt.Errorf("%s %s exited on its own (%v); see its log", n.Name, n.Addr, n.proc.err)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Result is one finished CLI invocation.
type Result struct {
	Args   []string
	Code   int // exit code; -1 when the process was killed at cliDeadline
	Stdout string
	Stderr string
	Took   time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("chordkv %s: exit %d after %v\nstdout: %s\nstderr: %s",
		strings.Join(r.Args, " "), r.Code, r.Took.Round(time.Millisecond),
		strings.TrimSpace(r.Stdout), strings.TrimSpace(r.Stderr))
}

// CLI runs the cluster's binary with args; see runCLI.
func (c *Cluster) CLI(args ...string) Result { return c.CLIWithInput(nil, args...) }

// CLIWithInput is CLI with stdin as the process's standard input.
func (c *Cluster) CLIWithInput(stdin []byte, args ...string) Result {
	return runCLI(c.bin, stdin, append(slices.Clip(args), c.CLIArgs...)...)
}

// runCLI runs bin with args and standard input stdin (none when nil), as a
// script would, bounded by cliDeadline. It never fails the test: callers
// judge the Result.
func runCLI(bin string, stdin []byte, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), cliDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.WaitDelay = time.Second // bound the wait for output pipes, too
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := Result{Args: args, Took: time.Since(start), Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		r.Code = -1
		r.Stderr += fmt.Sprintf("\n[e2e: killed after %v]", cliDeadline)
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
	default:
		r.Code = -1
		r.Stderr += fmt.Sprintf("\n[e2e: %v]", err)
	}
	return r
}

// query runs a client command against endpoint with -o json and decodes
// its output into out; any exit code but 0 is an error.
func (c *Cluster) query(out any, endpoint string, args ...string) error {
	args = append(args, "--endpoints", endpoint, "--timeout", cliTimeout, "-o", "json")
	r := c.CLI(args...)
	if r.Code != 0 {
		return errors.New(r.String())
	}
	if err := json.Unmarshal([]byte(r.Stdout), out); err != nil {
		return fmt.Errorf("%s\ndecode: %w", r, err)
	}
	return nil
}

// RingView is `chordkv ring -o json`.
type RingView struct {
	Nodes []RingNode `json:"nodes"`
}

// RingNode is one entry of RingView.
type RingNode struct {
	ID          string   `json:"id"`
	Addr        string   `json:"addr"`
	Predecessor string   `json:"predecessor"`
	Successors  []string `json:"successors"`
}

// LookupView is `chordkv lookup KEY -o json`.
type LookupView struct {
	Key   string   `json:"key"`
	ID    string   `json:"id"`
	Owner string   `json:"owner"`
	Hops  int      `json:"hops"`
	Path  []string `json:"path"`
}

// StatusView is the part of `chordkv status -o json` the tests rely on.
type StatusView struct {
	ID          string   `json:"id"`
	Addr        string   `json:"addr"`
	Predecessor string   `json:"predecessor"`
	Successors  []string `json:"successors"`
	Ready       bool     `json:"ready"`
	Synced      bool     `json:"synced"`
	StoredKeys  int64    `json:"stored_keys"`
	ReadLease   struct {
		Held        bool     `json:"held"`
		Grantors    []string `json:"grantors"`
		RemainingMS int64    `json:"remaining_ms"`
		Renewing    bool     `json:"renewing"`
	} `json:"read_lease"`
	LeasesGranted int `json:"leases_granted"`
}

// Ring walks the ring from endpoint.
func (c *Cluster) Ring(endpoint string) (RingView, error) {
	var v RingView
	return v, c.query(&v, endpoint, "ring")
}

// Lookup asks endpoint for key's owner.
func (c *Cluster) Lookup(endpoint, key string) (LookupView, error) {
	var v LookupView
	return v, c.query(&v, endpoint, "lookup", key)
}

// Status asks endpoint about itself.
func (c *Cluster) Status(endpoint string) (StatusView, error) {
	var v StatusView
	return v, c.query(&v, endpoint, "status")
}

// Eventually retries check every pollInterval until it returns nil, and
// returns how long that took. It fails the test when deadline passes first
// or when a node dies that the harness did not stop.
func (c *Cluster) Eventually(t testing.TB, what string, deadline time.Duration, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for attempt := 1; ; attempt++ {
		if err := c.unexpectedExit(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > deadline {
			t.Fatalf("%s: still failing after %v (%d attempts); last error:\n%v", what, deadline, attempt, err)
		}
		time.Sleep(pollInterval)
	}
}

// logTiming prints a measurement in the form docs/benchmarks.md quotes.
func logTiming(t testing.TB, what string, d time.Duration) {
	t.Helper()
	t.Logf("%s: %.2f s", what, d.Seconds())
}

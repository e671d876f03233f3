package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/testnet"
)

// Bounds. None is a speed requirement: they turn a hang into a failure.
const (
	cmdShort     = 30 * time.Second // one docker/CLI command
	cmdLong      = 3 * time.Minute  // docker build, compose up/down
	ringDeadline = 90 * time.Second // a ring forms or heals
	keyDeadline  = 30 * time.Second // one key becomes readable
	pollInterval = 500 * time.Millisecond
	cliTimeout   = "2s" // the CLI's own --timeout per endpoint
)

// nodes are the chordkv services of deploy/docker-compose.yml.
var nodes = []string{"node1", "node2", "node3", "node4", "node5"}

// run runs one command with a deadline and returns its combined output.
func run(t testing.TB, limit time.Duration, env []string, argv []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	full := append(append([]string{}, argv[1:]...), args...)
	cmd := exec.CommandContext(ctx, argv[0], full...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: timed out after %v", argv[0], strings.Join(full, " "), limit)
	}
	return out.String(), err
}

// runSplit is run with stdout and stderr apart, and the exit code.
func runSplit(limit time.Duration, argv ...string) (stdout, stderr string, code int) {
	return runSplitWithInput(limit, "", argv...)
}

// runSplitWithInput is runSplit with stdin as the command's standard input.
func runSplitWithInput(limit time.Duration, stdin string, argv ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return o.String(), fmt.Sprintf("timed out after %v; %s", limit, e.String()), -1
	case errors.As(err, &ee):
		return o.String(), e.String(), ee.ExitCode()
	case err != nil:
		return o.String(), err.Error(), -1
	}
	return o.String(), e.String(), 0
}

// composeCommand returns the compose CLI to use: `docker compose` (v2) if
// the docker CLI has it, else the v1 `docker-compose` binary; or skips.
func composeCommand(t testing.TB) []string {
	t.Helper()
	if _, err := exec.LookPath("docker"); err == nil {
		if _, err := run(t, cmdShort, nil, []string{"docker", "compose", "version"}); err == nil {
			return []string{"docker", "compose"}
		}
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	t.Skip("neither `docker compose` nor `docker-compose` is installed: skipping the compose checks")
	return nil
}

// requireEngine skips the test unless a docker engine answers.
func requireEngine(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker CLI on PATH: skipping the docker end-to-end test")
	}
	out, err := run(t, 15*time.Second, nil, []string{"docker", "version", "--format", "{{.Server.Version}}"})
	if err != nil {
		t.Skipf("no docker engine answers (docker version: %v: %s): skipping the docker end-to-end test",
			err, strings.TrimSpace(out))
	}
}

// chordkvBin returns CHORDKV_BIN, or skips when it is unset. The binary
// must be static: the image is FROM scratch, with no libc to load.
func chordkvBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("CHORDKV_BIN")
	if bin == "" {
		t.Skip("CHORDKV_BIN is not set: the docker end-to-end test builds its image from a built chordkv; " +
			"run `make e2e-docker`, or `make build` then `CHORDKV_BIN=$PWD/bin/chordkv go test ./test/docker/`")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(abs)
	if err != nil {
		t.Fatalf("CHORDKV_BIN=%s: %v", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("CHORDKV_BIN=%s is dynamically linked; a FROM scratch image needs a static binary (make build: CGO_ENABLED=0)", bin)
		}
	}
	return abs
}

func randomSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// freePort returns a 127.0.0.1 port that was free a moment ago, below the
// kernel's ephemeral range (see testnet).
func freePort(t testing.TB) string {
	t.Helper()
	return testnet.Port(t)
}

// buildImage builds deploy/Dockerfile in a temporary context holding only
// the binary and deploy/image/, exactly the files .dockerignore lets
// through, so CHORDKV_BIN may live anywhere. It removes the image at the end.
func buildImage(t testing.TB, bin, tag string) {
	t.Helper()
	root := repoRoot(t)
	ctxDir := t.TempDir()
	copyFile(t, bin, filepath.Join(ctxDir, "bin", "chordkv"), 0o755)
	copyFile(t, filepath.Join(root, "deploy", "Dockerfile"), filepath.Join(ctxDir, "deploy", "Dockerfile"), 0o644)
	src := filepath.Join(root, "deploy", "image")
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		copyFile(t, p, filepath.Join(ctxDir, rel), 0o644)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := run(t, cmdLong, nil, []string{"docker", "build", "-q", "-t", tag, "-f", filepath.Join(ctxDir, "deploy", "Dockerfile"), ctxDir})
	if err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Logf("built image %s in %v", tag, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if out, err := run(t, cmdShort, nil, []string{"docker", "rmi", "-f", tag}); err != nil {
			t.Logf("docker rmi %s: %v\n%s", tag, err, out)
		}
	})
}

func copyFile(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// eventually polls check until it returns nil or deadline passes, then
// fails with check's last error. It returns how long it took.
func eventually(t testing.TB, what string, deadline time.Duration, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			d := time.Since(start).Round(time.Millisecond)
			t.Logf("%s: %v", what, d)
			return d
		}
		if time.Since(start) > deadline {
			t.Fatalf("%s: not within %v: %v", what, deadline, err)
		}
		time.Sleep(pollInterval)
	}
}

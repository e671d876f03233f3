package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// Exit codes of the CLI contract that these tests provoke (1, other
// failure, and 3, not found, need the key-value commands).
const (
	exitOK          = 0
	exitUsage       = 2
	exitUnavailable = 4
)

// TestCLIExitCodes drives the client commands as a script would and checks
// the exit codes scripts rely on.
func TestCLIExitCodes(t *testing.T) {
	c := StartCluster(t, 1, ringSuccessors)
	live := c.Nodes[0].Addr
	c.Eventually(t, "single node answers status", ringDeadline, func() error {
		_, err := c.Status(live)
		return err
	})
	dead := freeAddrs(t, 1)[0] // nothing listens there once freeAddrs returns

	t.Run("live endpoint", func(t *testing.T) {
		for _, args := range [][]string{
			{"status"},
			{"ring"},
			{"lookup", "some-key"},
		} {
			r := c.CLI(append(args, "--endpoints", live, "--timeout", cliTimeout, "-o", "json")...)
			if r.Code != exitOK {
				t.Errorf("want exit %d: %v", exitOK, r)
			}
		}
	})

	t.Run("dead endpoint is unavailable", func(t *testing.T) {
		for _, args := range [][]string{
			{"status"},
			{"ring"},
			{"lookup", "some-key"},
		} {
			r := c.CLI(append(args, "--endpoints", dead, "--timeout", "1s", "-o", "json")...)
			if r.Code != exitUnavailable {
				t.Errorf("want exit %d (unavailable): %v", exitUnavailable, r)
			}
			if !strings.Contains(r.Stderr, dead) {
				t.Errorf("error message does not name %s: %v", dead, r)
			}
			t.Logf("%s against a dead endpoint: exit %d after %v", args[0], r.Code, r.Took)
		}
	})

	t.Run("bad usage", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
		}{
			{"unknown command", []string{"no-such-command"}},
			{"unknown flag", []string{"status", "--endpoints", live, "--no-such-flag"}},
			{"lookup without a key", []string{"lookup", "--endpoints", live}},
			{"lookup with two keys", []string{"lookup", "a", "b", "--endpoints", live}},
			{"bad output format", []string{"status", "--endpoints", live, "-o", "yaml"}},
			{"bad timeout", []string{"status", "--endpoints", live, "--timeout", "soon"}},
			{"serve without --data-dir", []string{"serve", "--addr", dead}},
			{"serve with a bad --successors", []string{"serve", "--addr", dead,
				"--data-dir", filepath.Join(t.TempDir(), "d"), "--successors", "many"}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := c.CLI(tc.args...)
				if r.Code != exitUsage {
					t.Errorf("want exit %d (usage): %v", exitUsage, r)
				}
			})
		}
	})
}

// simReport is the part of `chordkv sim -o json` checked here.
type simReport struct {
	Nodes         int `json:"nodes"`
	Lookups       int `json:"lookups"`
	FailedLookups int `json:"failed_lookups"`
	WrongOwners   int `json:"wrong_owners"`
	Crashed       int `json:"crashed"`
}

// TestSimCLI runs the simulator through the binary: a seed fixes the report
// byte for byte, every lookup finds the oracle's owner, even after a
// quarter of the ring crashed at once, and bad arguments exit 2.
func TestSimCLI(t *testing.T) {
	bin := chordkvBin(t)
	tests := []struct {
		name        string
		args        []string
		wantCrashed int
	}{
		{"stable ring", []string{"--nodes", "64", "--lookups", "500", "--seed", "3"}, 0},
		{"a quarter crashed", []string{"--nodes", "64", "--lookups", "500", "--seed", "3", "--fail", "0.25"}, 16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"sim", "-o", "json"}, tc.args...)
			first, second := runCLI(bin, nil, args...), runCLI(bin, nil, args...)
			if first.Code != exitOK || second.Code != exitOK {
				t.Fatalf("want exit 0:\n%v\n%v", first, second)
			}
			if first.Stdout != second.Stdout {
				t.Errorf("same seed, different reports:\n%s\n%s", first.Stdout, second.Stdout)
			}
			var rep simReport
			if err := json.Unmarshal([]byte(first.Stdout), &rep); err != nil {
				t.Fatalf("%v\ndecode: %v", first, err)
			}
			want := simReport{Nodes: 64, Lookups: 500, Crashed: tc.wantCrashed}
			if rep != want {
				t.Errorf("report %+v, want %+v", rep, want)
			}
		})
	}
	for _, args := range [][]string{
		{"sim", "--nodes", "0"},
		{"sim", "--fail", "1.5"},
		{"sim", "--nodes", "ten"},
	} {
		if r := runCLI(bin, nil, args...); r.Code != exitUsage {
			t.Errorf("want exit %d (usage): %v", exitUsage, r)
		}
	}
}

package e2e

import (
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

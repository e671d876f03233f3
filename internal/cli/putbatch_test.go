package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestPutBatchAgainstARing(t *testing.T) {
	a, b, c, dead := startRing(t)

	// Values keep their inner and trailing spaces; empty lines are skipped.
	input := "alpha 1\n\nbeta two words \ngamma \n" + "delta x y\n"
	r := runCLIWithInput([]byte(input), "put", "--batch", "--endpoints", dead+","+a, "--consistency", "all")
	if r.code != ExitOK || r.stdout != "written 4, failed 0\n" {
		t.Fatalf("put --batch: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for key, want := range map[string]string{"alpha": "1", "beta": "two words ", "gamma": "", "delta": "x y"} {
		if r := runCLI("get", key, "--endpoints", b); r.code != ExitOK || r.stdout != want {
			t.Errorf("get %s: exit %d, stdout %q, want %q: %s", key, r.code, r.stdout, want, r.stderr)
		}
	}

	// More pairs than one MultiPut carries go out in several.
	var many strings.Builder
	for i := range batchItems + 20 {
		fmt.Fprintf(&many, "k%d v%d\n", i, i)
	}
	r = runCLIWithInput([]byte(many.String()), "put", "--batch", "--endpoints", c, "-o", "json")
	var rep putBatchJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != ExitOK || err != nil || rep.Written != batchItems+20 || rep.Failed != 0 {
		t.Fatalf("put --batch of %d: exit %d, %v, %+v: %s", batchItems+20, r.code, err, rep, r.stderr)
	}
	if r := runCLI("get", fmt.Sprint("k", batchItems+19), "--endpoints", a); r.code != ExitOK || r.stdout != fmt.Sprint("v", batchItems+19) {
		t.Errorf("get the last pair: exit %d, %q", r.code, r.stdout)
	}

	tests := []struct {
		name   string
		input  string
		args   []string
		code   int
		stdout string // exact, when not empty
		stderr string
	}{
		{"line without a space", "a 1\nnospace\n", []string{"--endpoints", a}, ExitUsage, "", "line 2: no space"},
		{"empty key", "a 1\n\n b\n", []string{"--endpoints", a}, ExitUsage, "", "line 3: key is empty"},
		{"argument with --batch", "a 1\n", []string{"key", "--endpoints", a}, ExitUsage, "", "no KEY or VALUE argument"},
		{"one item refused", "ok 1\n" + strings.Repeat("k", 1025) + " v\nok2 2\n", []string{"--endpoints", a, "-o", "json"}, ExitFailure,
			"", "line 2"},
		{"no endpoint answers", "a 1\n", []string{"--endpoints", dead, "--timeout", "300ms"}, ExitUnavailable, "written 0, failed 1\n", dead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLIWithInput([]byte(tt.input), append([]string{"put", "--batch"}, tt.args...)...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) || (tt.stdout != "" && r.stdout != tt.stdout) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr with %q", r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
	// The malformed input wrote nothing: its first line's key is absent.
	if r := runCLIWithInput([]byte("unwritten 1\nnospace\n"), "put", "--batch", "--endpoints", a); r.code != ExitUsage {
		t.Fatalf("malformed: exit %d", r.code)
	}
	if r := runCLI("get", "unwritten", "--endpoints", a); r.code != ExitNotFound {
		t.Errorf("a malformed batch wrote its first line: exit %d", r.code)
	}
	// A refused item does not stop the others; JSON names it.
	r = runCLIWithInput([]byte("ok3 1\n"+strings.Repeat("k", 1025)+" v\nok4 2\n"), "put", "--batch", "--endpoints", a, "-o", "json")
	rep = putBatchJSON{}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Written != 2 || rep.Failed != 1 || len(rep.Errors) != 1 ||
		!strings.Contains(rep.Errors[0], "--max-key-bytes") {
		t.Errorf("partial batch: exit %d, %v, %+v", r.code, err, rep)
	}
}

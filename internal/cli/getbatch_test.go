package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/chordkv/chordkv/internal/transport"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

func TestParseBatchKeys(t *testing.T) {
	tests := []struct {
		name  string
		input string
		keys  []string
		lines []int
	}{
		{"one key per line", "a\nb\n", []string{"a", "b"}, []int{1, 2}},
		{"empty lines skipped, numbers kept", "\na\n\n\nb", []string{"a", "b"}, []int{2, 5}},
		{"spaces are part of the key", " a b \n", []string{" a b "}, []int{1}},
		{"CRLF line ends, as put --batch reads them", "a\r\nb\r\n", []string{"a", "b"}, []int{1, 2}},
		{"nothing", "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseBatchKeys(strings.NewReader(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			var lines []int
			for _, l := range got {
				keys = append(keys, string(l.key))
				lines = append(lines, l.line)
				if l.value != nil {
					t.Errorf("line %d has a value %q", l.line, l.value)
				}
			}
			if !slices.Equal(keys, tt.keys) || !slices.Equal(lines, tt.lines) {
				t.Errorf("keys %q at lines %v, want %q at %v", keys, lines, tt.keys, tt.lines)
			}
		})
	}
}

// FuzzParseBatchKeys checks that any input parses without a panic into
// the input's non-empty lines, each a key as it is.
func FuzzParseBatchKeys(f *testing.F) {
	for _, s := range []string{"a\nb\n", "\n\n", "a\r\n", " x y \n\nz", "\r", "a\rb\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		got, err := parseBatchKeys(bytes.NewReader(input))
		if err != nil {
			t.Fatalf("parse %q: %v", input, err)
		}
		var want [][]byte
		for line := range bytes.Lines(input) {
			line = bytes.TrimSuffix(line, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\r"))
			if len(line) > 0 {
				want = append(want, line)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("parse %q: %d keys, want %d", input, len(got), len(want))
		}
		for i, l := range got {
			if !bytes.Equal(l.key, want[i]) || (i > 0 && l.line <= got[i-1].line) {
				t.Fatalf("parse %q: key %d is %q at line %d, want %q", input, i, l.key, l.line, want[i])
			}
		}
	})
}

func TestGetAndDelBatchAgainstARing(t *testing.T) {
	a, b, c, dead := startRing(t)

	// What put --batch writes, get --batch prints back line for line, an
	// empty value and values with spaces included; the keys are asked for
	// in another order, with empty lines and CRLF line ends.
	written := []string{"k1 one", "k2 two words ", "k3 ", "k4 x"}
	in := strings.Join(written, "\n") + "\n"
	if r := runCLIWithInput([]byte(in), "put", "--batch", "--endpoints", a); r.code != ExitOK {
		t.Fatalf("put --batch: exit %d: %s", r.code, r.stderr)
	}
	r := runCLIWithInput([]byte("k3\r\n\nk1\nk2\nk4\n"), "get", "--batch", "--endpoints", dead+","+b)
	if want := "k3 \nk1 one\nk2 two words \nk4 x\n"; r.code != ExitOK || r.stdout != want || r.stderr != "found 4, missing 0, failed 0\n" {
		t.Fatalf("get --batch: exit %d, stdout %q, stderr %q; want exit 0, stdout %q", r.code, r.stdout, r.stderr, want)
	}
	// The copy idiom: get --batch's output is put --batch's input.
	r = runCLIWithInput([]byte("k1\nk2\nk3\nk4\n"), "get", "--batch", "--endpoints", c)
	if r.stdout != in {
		t.Fatalf("round trip: get --batch printed %q for put --batch's %q", r.stdout, in)
	}
	if r := runCLIWithInput([]byte(r.stdout), "put", "--batch", "--endpoints", c); r.code != ExitOK {
		t.Fatalf("put --batch of get --batch's output: exit %d: %s", r.code, r.stderr)
	}

	// Values get --batch cannot print as a `KEY VALUE` line fail in text
	// and come back in JSON.
	for _, kv := range [][2]string{{"multi", "line 1\nline 2"}, {"has space", "v"}, {"cr", "v\r"}} {
		if r := runCLI("put", kv[0], kv[1], "--endpoints", a); r.code != ExitOK {
			t.Fatalf("put %q: exit %d: %s", kv[0], r.code, r.stderr)
		}
	}

	// More keys than one MultiGet carries, some of them missing.
	var many, manyOut strings.Builder
	for i := range batchItems + 20 {
		fmt.Fprintf(&many, "m%d %d\n", i, i)
	}
	if r := runCLIWithInput([]byte(many.String()), "put", "--batch", "--endpoints", b); r.code != ExitOK {
		t.Fatalf("put --batch many: exit %d: %s", r.code, r.stderr)
	}
	for i := range batchItems + 20 {
		fmt.Fprintf(&manyOut, "m%d\nnever%d\n", i, i)
	}

	// Values that fill a MultiGet response (about 2 MiB) are asked for
	// again in later calls.
	big := strings.Repeat("b", 700<<10)
	var bigKeys, bigOut strings.Builder
	for i := range 5 {
		key := fmt.Sprint("big", i)
		if r := runCLI("put", key, big, "--endpoints", a); r.code != ExitOK {
			t.Fatalf("put %s: exit %d: %s", key, r.code, r.stderr)
		}
		fmt.Fprintln(&bigKeys, key)
		fmt.Fprintf(&bigOut, "%s %s\n", key, big)
	}

	longKey := strings.Repeat("k", 1025)
	tests := []struct {
		name   string
		input  string
		args   []string
		code   int
		stdout string
		stderr string // a substring
	}{
		{"all found", "k1\nk4\n", []string{"--endpoints", a}, ExitOK, "k1 one\nk4 x\n", "found 2, missing 0, failed 0\n"},
		{"some missing", "k1\nnope\nk4\nnada\n", []string{"--endpoints", a}, ExitNotFound, "k1 one\nk4 x\n",
			"found 2, missing 2, failed 0\nchordkv: get --batch: 2 of 4 keys not found\n"},
		{"newline in a value", "k1\nmulti\nnope\n", []string{"--endpoints", a}, ExitFailure, "k1 one\n",
			"found 1, missing 1, failed 1\nchordkv: get --batch: 1 of 3 keys not read, the first: line 2 (key \"multi\"): value has a newline; read it with get KEY"},
		{"space in a key", "has space\n", []string{"--endpoints", a}, ExitFailure, "", "key has a space"},
		{"CR ending a value", "cr\n", []string{"--endpoints", a}, ExitFailure, "", "carriage return"},
		{"key refused by the node", "k1\n" + longKey + "\n", []string{"--endpoints", a}, ExitFailure, "k1 one\n", "--max-key-bytes"},
		{"several MultiGets", manyOut.String(), []string{"--endpoints", c}, ExitNotFound, many.String(),
			fmt.Sprintf("found %d, missing %d, failed 0\n", batchItems+20, batchItems+20)},
		{"values over one response", bigKeys.String(), []string{"--endpoints", b}, ExitOK, bigOut.String(), "found 5, missing 0, failed 0\n"},
		{"no endpoint answers", "k1\nk2\n", []string{"--endpoints", dead, "--timeout", "300ms"}, ExitUnavailable, "", "found 0, missing 0, failed 2\n"},
		{"argument with --batch", "k1\n", []string{"k1", "--endpoints", a}, ExitUsage, "", "get --batch takes no KEY argument"},
		{"bad consistency", "k1\n", []string{"--endpoints", a, "--consistency", "most"}, ExitUsage, "", "--consistency"},
		{"no keys", "\n\n", []string{"--endpoints", a}, ExitOK, "", "found 0, missing 0, failed 0\n"},
	}
	for _, tt := range tests {
		t.Run("get "+tt.name, func(t *testing.T) {
			r := runCLIWithInput([]byte(tt.input), append([]string{"get", "--batch"}, tt.args...)...)
			if r.code != tt.code || r.stdout != tt.stdout || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("exit %d, stdout %.200q, stderr %.300q; want exit %d, stdout %.200q, stderr with %q",
					r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}

	// JSON: one item per input key, in input order; a value text cannot
	// carry is found.
	r = runCLIWithInput([]byte("k3\nnope\nmulti\n"+longKey+"\n"), "get", "--batch", "--endpoints", a, "-o", "json")
	var rep getBatchJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != ExitFailure || err != nil {
		t.Fatalf("get --batch -o json: exit %d, %v: %q %q", r.code, err, r.stdout, r.stderr)
	}
	if rep.Found != 2 || rep.Missing != 1 || rep.Failed != 1 || len(rep.Items) != 4 || len(rep.Errors) != 1 {
		t.Fatalf("get --batch -o json = %+v", rep)
	}
	k3, nope, multi, long := rep.Items[0], rep.Items[1], rep.Items[2], rep.Items[3]
	if k3.Key != "k3" || !k3.Found || k3.Value == nil || len(k3.Value) != 0 || k3.Version == nil || !isNodeID(k3.Version.Node, a, b, c) {
		t.Errorf("found empty value: %+v", k3)
	}
	if nope.Key != "nope" || nope.Found || nope.Value != nil || nope.Version != nil || nope.Error != "" {
		t.Errorf("missing key: %+v", nope)
	}
	if !multi.Found || string(multi.Value) != "line 1\nline 2" || multi.Version == nil {
		t.Errorf("value with a newline in JSON: %+v", multi)
	}
	if long.Found || long.Error == "" || long.Value != nil || long.Version != nil || !strings.Contains(rep.Errors[0], long.Error) {
		t.Errorf("failed key: %+v, errors %q", long, rep.Errors)
	}
	// The exact shapes: a missing key is key and found only, a found one
	// has the version single get prints.
	var raw struct{ Items []map[string]json.RawMessage }
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(raw.Items[1])); !slices.Equal(got, []string{"found", "key"}) {
		t.Errorf("missing item has fields %q", got)
	}
	if got := slices.Sorted(maps.Keys(raw.Items[0])); !slices.Equal(got, []string{"found", "key", "value", "version"}) {
		t.Errorf("found item has fields %q", got)
	}
	if got := slices.Sorted(maps.Keys(raw.Items[3])); !slices.Equal(got, []string{"error", "found", "key"}) {
		t.Errorf("failed item has fields %q", got)
	}
	r = runCLI("get", "k3", "--endpoints", a, "-o", "json")
	var single getJSON
	if err := json.Unmarshal([]byte(r.stdout), &single); err != nil || single.Version != *k3.Version {
		t.Errorf("single get's version %+v (%v), get --batch's %+v", single.Version, err, *k3.Version)
	}
	r = runCLIWithInput([]byte("k1\n"), "get", "--batch", "--endpoints", a, "-o", "json")
	if r.code != ExitOK || !strings.Contains(r.stdout, `"errors": []`) || r.stderr != "" {
		t.Errorf("all found in JSON: exit %d, %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	delTests := []struct {
		name   string
		input  string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"deletes", "k1\n\nk2\nnever-written\n", []string{"--endpoints", dead + "," + a}, ExitOK, "deleted 3, failed 0\n", ""},
		{"json", "k3\n", []string{"--endpoints", b, "-o", "json"}, ExitOK, "{\n  \"deleted\": 1,\n  \"failed\": 0,\n  \"errors\": []\n}\n", ""},
		{"key refused by the node", "k4\n" + longKey + "\n", []string{"--endpoints", a}, ExitFailure, "deleted 1, failed 1\n", "line 2"},
		{"no endpoint answers", "k1\n", []string{"--endpoints", dead, "--timeout", "300ms"}, ExitUnavailable, "deleted 0, failed 1\n", dead},
		{"argument with --batch", "k1\n", []string{"k1", "--endpoints", a}, ExitUsage, "", "del --batch takes no KEY argument"},
	}
	for _, tt := range delTests {
		t.Run("del "+tt.name, func(t *testing.T) {
			r := runCLIWithInput([]byte(tt.input), append([]string{"del", "--batch"}, tt.args...)...)
			if r.code != tt.code || r.stdout != tt.stdout || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr with %q", r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
	// What del --batch deleted, get --batch reports missing.
	r = runCLIWithInput([]byte("k1\nk2\nk3\nk4\n"), "get", "--batch", "--endpoints", c)
	if r.code != ExitNotFound || r.stdout != "" || !strings.HasPrefix(r.stderr, "found 0, missing 4, failed 0\n") {
		t.Errorf("get --batch after del --batch: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// get --batch asks again for a key left out of a full response, whether
// the node says so with the response_full flag or, predating it, only in
// the error text, directly or behind a forwarding node's owner address.
func TestLeftOut(t *testing.T) {
	full := transport.ErrResponseFull.Error()
	tests := []struct {
		name   string
		result *pb.GetResult
		want   bool
	}{
		{"flag", &pb.GetResult{Error: full, ResponseFull: true}, true},
		{"flag with other text", &pb.GetResult{Error: "left out", ResponseFull: true}, true},
		{"text only, from an older node", &pb.GetResult{Error: full}, true},
		{"text only, forwarded", &pb.GetResult{Error: "10.0.0.2:7000: " + full}, true},
		{"another failure", &pb.GetResult{Error: "unavailable: 1 of the 2 replicas required answered"}, false},
		{"found", &pb.GetResult{Found: true, Value: []byte(full)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := leftOut(tt.result); got != tt.want {
				t.Errorf("leftOut = %v, want %v", got, tt.want)
			}
		})
	}
}

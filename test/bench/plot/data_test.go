package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func simJSON(nodes int, mean float64, crashed, failed int) string {
	return fmt.Sprintf(`{"nodes":%d,"lookups":1000,"hops":{"mean":%g,"p50":3,"p99":5,"max":6},`+
		`"failed_lookups":%d,"crashed":%d,"seed":1,"hop_bound":4}`, nodes, mean, failed, crashed)
}

func benchJSON(op string, c int, ops, p99 float64, errs int64, interrupted bool, batch int) string {
	return fmt.Sprintf(`{"op":%q,"ops_per_sec":%g,"p50_ms":0.5,"p99_ms":%g,"p999_ms":9,"errors":%d,`+
		`"ops":100,"concurrency":%d,"connections":1,"interrupted":%t,"routing":"client","batch":%d}`,
		op, ops, p99, errs, c, interrupted, batch)
}

func files(kv ...string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for i := 0; i < len(kv); i += 2 {
		fsys[kv[i]] = &fstest.MapFile{Data: []byte(kv[i+1])}
	}
	return fsys
}

// TestLoad checks the series the figures are drawn from: points sorted
// by x whatever order the files come in, series in a fixed order, unknown
// files ignored, and every inconsistency that would make a figure lie
// rejected with the file named.
func TestLoad(t *testing.T) {
	tests := []struct {
		name     string
		fsys     fstest.MapFS
		wantHops []hopPoint
		// wantSeries is "target op: c1,c2,..." per series, in order.
		wantSeries []string
		wantErr    string
	}{
		{
			name: "full set, out of order, extras ignored",
			fsys: files(
				"sim-n4096.json", simJSON(4096, 6.3, 0, 0),
				"sim-n64.json", simJSON(64, 3.25, 0, 0),
				"sim-n256.json", simJSON(256, 4.26, 0, 0),
				"bench-ring3-put-c64.json", benchJSON("put", 64, 3000, 50, 0, false, 1),
				"bench-ring3-put-c1.json", benchJSON("put", 1, 800, 2, 0, false, 1),
				"bench-single-get-c128.json", benchJSON("get", 128, 16000, 20, 0, false, 1),
				"bench-single-get-c2.json", benchJSON("get", 2, 6000, 1, 0, false, 1),
				"bench-single-get-c16.json", benchJSON("get", 16, 12000, 4, 0, false, 1),
				"bench-ceiling-put-c8.json", benchJSON("put", 8, 20000, 3, 0, false, 1),
				"bench-ceiling-get-c8.json", benchJSON("get", 8, 20000, 3, 0, false, 1),
				"bench-zzz-get-c1.json", benchJSON("get", 1, 100, 1, 0, false, 1),
				"bench-aaa-get-c1.json", benchJSON("get", 1, 100, 1, 0, false, 1),
				"sweep-meta.json", `{"date":"x"}`,
				"notes.txt", "not json",
			),
			wantHops: []hopPoint{{64, 3.25}, {256, 4.26}, {4096, 6.3}},
			wantSeries: []string{
				"ceiling get: 8", "ceiling put: 8", "single get: 2,16,128", "ring3 put: 1,64",
				"aaa get: 1", "zzz get: 1",
			},
		},
		{
			name:       "bench only",
			fsys:       files("bench-single-put-c4.json", benchJSON("put", 4, 100, 1, 0, false, 1)),
			wantSeries: []string{"single put: 4"},
		},
		{
			name:    "op in the name disagrees with the report",
			fsys:    files("bench-single-get-c4.json", benchJSON("put", 4, 100, 1, 0, false, 1)),
			wantErr: `bench-single-get-c4.json: report is for op "put"`,
		},
		{
			name:    "concurrency in the name disagrees with the report",
			fsys:    files("bench-single-get-c4.json", benchJSON("get", 8, 100, 1, 0, false, 1)),
			wantErr: "bench-single-get-c4.json: report is for concurrency 8",
		},
		{
			name:    "name without a concurrency",
			fsys:    files("bench-single-get.json", benchJSON("get", 8, 100, 1, 0, false, 1)),
			wantErr: "want bench-<target>-<op>-c<concurrency>.json",
		},
		{
			name:    "target name with a dash",
			fsys:    files("bench-ring-3-get-c8.json", benchJSON("get", 8, 100, 1, 0, false, 1)),
			wantErr: "want bench-<target>-<op>-c<concurrency>.json",
		},
		{
			name:    "concurrency not a number",
			fsys:    files("bench-single-get-cx.json", benchJSON("get", 8, 100, 1, 0, false, 1)),
			wantErr: "concurrency in the name",
		},
		{
			name:    "interrupted run",
			fsys:    files("bench-single-get-c8.json", benchJSON("get", 8, 100, 1, 0, true, 1)),
			wantErr: "interrupted",
		},
		{
			name:    "batched run counts keys, not calls",
			fsys:    files("bench-single-get-c8.json", benchJSON("get", 8, 100, 1, 0, false, 16)),
			wantErr: "batched run (--batch 16)",
		},
		{
			name:    "zero throughput",
			fsys:    files("bench-single-get-c8.json", benchJSON("get", 8, 0, 1, 0, false, 1)),
			wantErr: "0 ops/s",
		},
		{
			name:    "zero p99 cannot go on a log axis",
			fsys:    files("bench-single-get-c8.json", benchJSON("get", 8, 100, 0, 0, false, 1)),
			wantErr: "log axis",
		},
		{
			name:    "malformed bench JSON",
			fsys:    files("bench-single-get-c8.json", `{"op":`),
			wantErr: "parse bench-single-get-c8.json",
		},
		{
			name: "same point twice (c08 and c8)",
			fsys: files(
				"bench-single-get-c8.json", benchJSON("get", 8, 100, 1, 0, false, 1),
				"bench-single-get-c08.json", benchJSON("get", 8, 100, 1, 0, false, 1),
			),
			wantErr: "two bench reports for single get at concurrency 8",
		},
		{
			name:    "sim name disagrees with the report",
			fsys:    files("sim-n64.json", simJSON(128, 3, 0, 0)),
			wantErr: "sim-n64.json: report is for 128 nodes",
		},
		{
			name:    "sim with crashes",
			fsys:    files("sim-n64.json", simJSON(64, 3, 16, 0)),
			wantErr: "16 nodes crashed",
		},
		{
			name:    "sim with failed lookups",
			fsys:    files("sim-n64.json", simJSON(64, 3, 0, 2)),
			wantErr: "2 failed lookups",
		},
		{
			name:    "sim of one node has no place on a log axis",
			fsys:    files("sim-n1.json", simJSON(1, 0, 0, 0)),
			wantErr: "at least 2",
		},
		{
			name: "same ring size twice",
			fsys: files(
				"sim-n64.json", simJSON(64, 3, 0, 0),
				"sim-n064.json", simJSON(64, 3, 0, 0),
			),
			wantErr: "two sim reports for 64 nodes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := load(tt.fsys)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("load: error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if !slices.Equal(d.Hops, tt.wantHops) {
				t.Errorf("hops %v, want %v", d.Hops, tt.wantHops)
			}
			var got []string
			for _, s := range d.Series {
				var cs []string
				for _, p := range s.Points {
					cs = append(cs, fmt.Sprint(p.Concurrency))
				}
				got = append(got, s.Key.Target+" "+s.Key.Op+": "+strings.Join(cs, ","))
			}
			if !slices.Equal(got, tt.wantSeries) {
				t.Errorf("series\n got %q\nwant %q", got, tt.wantSeries)
			}
		})
	}
}

func TestErrorRuns(t *testing.T) {
	d, err := load(files(
		"bench-single-get-c1.json", benchJSON("get", 1, 100, 1, 0, false, 1),
		"bench-single-get-c2.json", benchJSON("get", 2, 100, 1, 3, false, 1),
	))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"single get at concurrency 2: 3 errors"}
	if got := d.errorRuns(); !slices.Equal(got, want) {
		t.Errorf("errorRuns %q, want %q", got, want)
	}
}

func TestNiceStep(t *testing.T) {
	for _, tt := range []struct{ span, want float64 }{
		{30000, 5000},
		{10, 1},
		{11, 2},
		{9.5, 1},
		{0.35, 0.05},
		{0, 0},
		{-1, 0},
	} {
		if got := niceStep(tt.span); math.Abs(got-tt.want) > 1e-12*tt.want {
			t.Errorf("niceStep(%v) = %v, want %v", tt.span, got, tt.want)
		}
	}
}

// TestRunWritesFigures draws all three figures from a small set, so a
// change that makes gonum/plot refuse the data (a log axis with a zero,
// say) fails here rather than in `make plots`.
func TestRunWritesFigures(t *testing.T) {
	data := t.TempDir()
	out := filepath.Join(t.TempDir(), "img")
	for name, f := range files(
		"sim-n64.json", simJSON(64, 3.25, 0, 0),
		"sim-n256.json", simJSON(256, 4.26, 0, 0),
		"bench-ceiling-get-c1.json", benchJSON("get", 1, 7000, 0.9, 0, false, 1),
		"bench-ceiling-get-c64.json", benchJSON("get", 64, 20000, 14, 0, false, 1),
		"bench-single-put-c1.json", benchJSON("put", 1, 2500, 0.7, 0, false, 1),
		"bench-single-put-c64.json", benchJSON("put", 64, 10000, 15, 0, false, 1),
	) {
		if err := os.WriteFile(filepath.Join(data, name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := run(data, out); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, name := range []string{"hops_vs_n.png", "throughput_vs_concurrency.png", "p99_vs_concurrency.png"} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.HasPrefix(string(b), "\x89PNG") {
			t.Errorf("%s is not a PNG", name)
		}
	}
	if err := run(t.TempDir(), out); err == nil || !strings.Contains(err.Error(), "no sim-n*.json") {
		t.Errorf("run on an empty directory: %v, want a no-data error", err)
	}
}

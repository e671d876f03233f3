package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
)

// simReport is the part of `chordkv sim -o json` (internal/sim.Report) the
// hops figure needs. Only the fields read here are declared, so the
// simulator may grow its report without breaking the plots.
type simReport struct {
	Nodes int `json:"nodes"`
	Hops  struct {
		Mean float64 `json:"mean"`
	} `json:"hops"`
	Crashed       int `json:"crashed"`
	FailedLookups int `json:"failed_lookups"`
}

// benchReport is the part of `chordkv bench -o json` the concurrency
// figures need.
type benchReport struct {
	Op          string  `json:"op"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	P99Ms       float64 `json:"p99_ms"`
	Errors      int64   `json:"errors"`
	Concurrency int     `json:"concurrency"`
	Interrupted bool    `json:"interrupted"`
	Batch       int     `json:"batch"`
}

// hopPoint is one simulated ring size.
type hopPoint struct {
	Nodes    int
	MeanHops float64
}

// benchPoint is one `chordkv bench` run of a series.
type benchPoint struct {
	Concurrency int
	OpsPerSec   float64
	P99Ms       float64
	Errors      int64
}

// seriesKey names a line of the concurrency figures: which server was
// measured and which operation.
type seriesKey struct {
	Target string // ceiling, single, ring3, ... (the file name's first part)
	Op     string // get or put
}

// series is one line: its points in increasing concurrency.
type series struct {
	Key    seriesKey
	Points []benchPoint
}

// dataset is everything in a results directory, ready to plot.
type dataset struct {
	Hops   []hopPoint // increasing Nodes
	Series []series   // targetOrder, then other targets by name; get before put
}

// File names test/bench/sweep.sh writes; the plot program reads nothing else.
const (
	simGlob   = "sim-n*.json"
	benchGlob = "bench-*.json"
)

// targetOrder fixes the order (and so the colours) of the known targets,
// so every regeneration of a figure looks the same.
var targetOrder = []string{"ceiling", "single", "ring3"}

// load reads every sim-n<N>.json and bench-<target>-<op>-c<C>.json in fsys.
// It rejects what would make a figure lie: a file whose name disagrees with
// its contents, two runs for the same point, a run that was interrupted or
// whose figures cannot be drawn on a log axis, or a sim run with crashes
// (the hops figure is for converged rings without failures).
func load(fsys fs.FS) (dataset, error) {
	var d dataset
	simFiles, err := fs.Glob(fsys, simGlob)
	if err != nil {
		return d, fmt.Errorf("list %s: %w", simGlob, err)
	}
	for _, name := range simFiles {
		p, err := loadSim(fsys, name)
		if err != nil {
			return d, err
		}
		d.Hops = append(d.Hops, p)
	}
	slices.SortFunc(d.Hops, func(a, b hopPoint) int { return a.Nodes - b.Nodes })
	for i := 1; i < len(d.Hops); i++ {
		if d.Hops[i].Nodes == d.Hops[i-1].Nodes {
			return d, fmt.Errorf("two sim reports for %d nodes", d.Hops[i].Nodes)
		}
	}

	benchFiles, err := fs.Glob(fsys, benchGlob)
	if err != nil {
		return d, fmt.Errorf("list %s: %w", benchGlob, err)
	}
	byKey := make(map[seriesKey][]benchPoint)
	for _, name := range benchFiles {
		key, p, err := loadBench(fsys, name)
		if err != nil {
			return d, err
		}
		byKey[key] = append(byKey[key], p)
	}
	for key, pts := range byKey {
		slices.SortFunc(pts, func(a, b benchPoint) int { return a.Concurrency - b.Concurrency })
		for i := 1; i < len(pts); i++ {
			if pts[i].Concurrency == pts[i-1].Concurrency {
				return d, fmt.Errorf("two bench reports for %s %s at concurrency %d", key.Target, key.Op, pts[i].Concurrency)
			}
		}
		d.Series = append(d.Series, series{Key: key, Points: pts})
	}
	slices.SortFunc(d.Series, func(a, b series) int { return compareKeys(a.Key, b.Key) })
	return d, nil
}

func loadSim(fsys fs.FS, name string) (hopPoint, error) {
	var r simReport
	if err := readJSON(fsys, name, &r); err != nil {
		return hopPoint{}, err
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "sim-n"), ".json"))
	if err != nil {
		return hopPoint{}, fmt.Errorf("%s: want sim-n<nodes>.json: %w", name, err)
	}
	switch {
	case r.Nodes != n:
		return hopPoint{}, fmt.Errorf("%s: report is for %d nodes", name, r.Nodes)
	case r.Nodes < 2:
		return hopPoint{}, fmt.Errorf("%s: %d nodes: a log axis needs at least 2", name, r.Nodes)
	case r.Crashed != 0:
		return hopPoint{}, fmt.Errorf("%s: %d nodes crashed: the hops figure is for rings without failures", name, r.Crashed)
	case r.FailedLookups != 0:
		return hopPoint{}, fmt.Errorf("%s: %d failed lookups", name, r.FailedLookups)
	case !(r.Hops.Mean >= 0) || math.IsInf(r.Hops.Mean, 0):
		return hopPoint{}, fmt.Errorf("%s: mean hops %v", name, r.Hops.Mean)
	}
	return hopPoint{Nodes: r.Nodes, MeanHops: r.Hops.Mean}, nil
}

func loadBench(fsys fs.FS, name string) (seriesKey, benchPoint, error) {
	// bench-<target>-<op>-c<C>.json; targets and ops contain no '-'.
	parts := strings.Split(strings.TrimSuffix(strings.TrimPrefix(name, "bench-"), ".json"), "-")
	if len(parts) != 3 || parts[0] == "" || !strings.HasPrefix(parts[2], "c") {
		return seriesKey{}, benchPoint{}, fmt.Errorf("%s: want bench-<target>-<op>-c<concurrency>.json", name)
	}
	c, err := strconv.Atoi(parts[2][1:])
	if err != nil {
		return seriesKey{}, benchPoint{}, fmt.Errorf("%s: concurrency in the name: %w", name, err)
	}
	key := seriesKey{Target: parts[0], Op: parts[1]}
	var r benchReport
	if err := readJSON(fsys, name, &r); err != nil {
		return seriesKey{}, benchPoint{}, err
	}
	switch {
	case r.Op != key.Op:
		return seriesKey{}, benchPoint{}, fmt.Errorf("%s: report is for op %q", name, r.Op)
	case r.Concurrency != c:
		return seriesKey{}, benchPoint{}, fmt.Errorf("%s: report is for concurrency %d", name, r.Concurrency)
	case c < 1:
		return seriesKey{}, benchPoint{}, fmt.Errorf("%s: concurrency %d: a log axis needs at least 1", name, c)
	case r.Batch > 1:
		// Batched runs count keys, not calls: they belong in another figure.
		return seriesKey{}, benchPoint{}, fmt.Errorf("%s: a batched run (--batch %d)", name, r.Batch)
	case r.Interrupted:
		return seriesKey{}, benchPoint{}, fmt.Errorf("%s: the run was interrupted", name)
	case !(r.OpsPerSec > 0) || math.IsInf(r.OpsPerSec, 0):
		return seriesKey{}, benchPoint{}, fmt.Errorf("%s: %v ops/s cannot go on the plot", name, r.OpsPerSec)
	case !(r.P99Ms > 0) || math.IsInf(r.P99Ms, 0):
		return seriesKey{}, benchPoint{}, fmt.Errorf("%s: p99 %v ms cannot go on a log axis", name, r.P99Ms)
	}
	return key, benchPoint{Concurrency: c, OpsPerSec: r.OpsPerSec, P99Ms: r.P99Ms, Errors: r.Errors}, nil
}

func readJSON(fsys fs.FS, name string, v any) error {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", path.Base(name), err)
	}
	return nil
}

// compareKeys orders series: known targets first in targetOrder, then
// other targets by name; within a target, get before put, then by name.
func compareKeys(a, b seriesKey) int {
	if c := compareTargets(a.Target, b.Target); c != 0 {
		return c
	}
	return compareOps(a.Op, b.Op)
}

func compareTargets(a, b string) int {
	ia, ib := slices.Index(targetOrder, a), slices.Index(targetOrder, b)
	switch {
	case ia >= 0 && ib >= 0:
		return ia - ib
	case ia >= 0:
		return -1
	case ib >= 0:
		return 1
	}
	return strings.Compare(a, b)
}

func compareOps(a, b string) int {
	rank := func(op string) int {
		switch op {
		case "get":
			return 0
		case "put":
			return 1
		}
		return 2
	}
	if c := rank(a) - rank(b); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

// halfLog2 is Chord's expected lookup path length, ½·log2 N (the Chord
// paper, §6.3), the reference line the hops figure is drawn against.
func halfLog2(n int) float64 { return 0.5 * math.Log2(float64(n)) }

// errorRuns names the runs that had errors, so the caller can warn: their
// throughput is still plotted, but a reader should know.
func (d dataset) errorRuns() []string {
	var out []string
	for _, s := range d.Series {
		for _, p := range s.Points {
			if p.Errors > 0 {
				out = append(out, fmt.Sprintf("%s %s at concurrency %d: %d errors", s.Key.Target, s.Key.Op, p.Concurrency, p.Errors))
			}
		}
	}
	return out
}

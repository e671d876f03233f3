// Command plot is measurement tooling, not product: it owns turning the JSON
// reports that test/bench/sweep.sh collects (`chordkv sim -o json` and
// `chordkv bench -o json`) into the PNG figures of docs/benchmarks.md:
//
//   - hops_vs_n.png: mean lookup hops against ring size, log2 x axis, with
//     the lines ½·log2 N and ½·log2 N + 1;
//   - throughput_vs_concurrency.png: ops/s against concurrent callers;
//   - p99_vs_concurrency.png: p99 latency against concurrent callers.
//
// Usage:
//
//	go run ./test/bench/plot --data docs/data --out docs/img
//
// It draws with gonum.org/v1/plot rather than by hand so that the figures
// come from a maintained plotting library, as the performance issue asks.
package main

import (
	"errors"
	"flag"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The figure size: large enough for six legend entries beside the lines.
const (
	figWidth  = 8 * vg.Inch
	figHeight = 5 * vg.Inch
)

func main() {
	data := flag.String("data", "docs/data", "directory with sim-n<N>.json and bench-<target>-<op>-c<C>.json")
	out := flag.String("out", "docs/img", "directory to write the PNGs into")
	flag.Parse()
	if err := run(*data, *out); err != nil {
		fmt.Fprintf(os.Stderr, "plot: %v\n", err)
		os.Exit(1)
	}
}

func run(dataDir, outDir string) error {
	d, err := load(os.DirFS(dataDir))
	if err != nil {
		return fmt.Errorf("load %s: %w", dataDir, err)
	}
	if len(d.Hops) == 0 && len(d.Series) == 0 {
		return errors.New("no sim-n*.json or bench-*.json in " + dataDir)
	}
	for _, e := range d.errorRuns() {
		fmt.Fprintf(os.Stderr, "plot: warning: %s (plotted anyway)\n", e)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", outDir, err)
	}
	type figure struct {
		file string
		make func(dataset) (*plot.Plot, error)
		has  bool
	}
	for _, f := range []figure{
		{"hops_vs_n.png", hopsPlot, len(d.Hops) > 0},
		{"throughput_vs_concurrency.png", throughputPlot, len(d.Series) > 0},
		{"p99_vs_concurrency.png", p99Plot, len(d.Series) > 0},
	} {
		if !f.has {
			fmt.Fprintf(os.Stderr, "plot: no data for %s, skipped\n", f.file)
			continue
		}
		p, err := f.make(d)
		if err != nil {
			return fmt.Errorf("%s: %w", f.file, err)
		}
		path := filepath.Join(outDir, f.file)
		if err := p.Save(figWidth, figHeight, path); err != nil {
			return fmt.Errorf("save %s: %w", path, err)
		}
		fmt.Fprintf(os.Stderr, "plot: wrote %s\n", path)
	}
	return nil
}

func hopsPlot(d dataset) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Lookup path length in chordkv sim (converged ring, no failures)"
	p.X.Label.Text = "nodes N (log2 scale)"
	p.Y.Label.Text = "mean hops per lookup"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = pow2Ticks(d.Hops[0].Nodes, d.Hops[len(d.Hops)-1].Nodes)
	p.Y.Min = 0
	p.Add(plotter.NewGrid())

	measured := make(plotter.XYs, len(d.Hops))
	half := make(plotter.XYs, len(d.Hops))
	halfPlus1 := make(plotter.XYs, len(d.Hops))
	for i, h := range d.Hops {
		x := float64(h.Nodes)
		measured[i] = plotter.XY{X: x, Y: h.MeanHops}
		half[i] = plotter.XY{X: x, Y: halfLog2(h.Nodes)}
		halfPlus1[i] = plotter.XY{X: x, Y: halfLog2(h.Nodes) + 1}
	}
	line, pts, err := plotter.NewLinePoints(measured)
	if err != nil {
		return nil, fmt.Errorf("measured hops: %w", err)
	}
	line.Color, pts.Color, pts.Shape = palette[0], palette[0], draw.CircleGlyph{}
	ref1, err := plotter.NewLine(half)
	if err != nil {
		return nil, fmt.Errorf("½·log2 N: %w", err)
	}
	ref1.Color, ref1.Dashes = palette[2], []vg.Length{vg.Points(6), vg.Points(3)}
	ref2, err := plotter.NewLine(halfPlus1)
	if err != nil {
		return nil, fmt.Errorf("½·log2 N + 1: %w", err)
	}
	ref2.Color, ref2.Dashes = palette[1], []vg.Length{vg.Points(2), vg.Points(2)}
	p.Add(ref2, ref1, line, pts)
	p.Legend.Add("measured mean hops", line, pts)
	p.Legend.Add("½·log2 N + 1", ref2)
	p.Legend.Add("½·log2 N", ref1)
	p.Legend.Top, p.Legend.Left = true, true
	// Room above the highest line for the legend.
	p.Y.Max = (halfLog2(d.Hops[len(d.Hops)-1].Nodes) + 1) * 1.35
	p.Y.Tick.Marker = niceTicks{}
	return p, nil
}

func throughputPlot(d dataset) (*plot.Plot, error) {
	p, err := concurrencyPlot(d, func(b benchPoint) float64 { return b.OpsPerSec })
	if err != nil {
		return nil, err
	}
	p.Title.Text = "Throughput vs concurrency (chordkv bench, 100 B values, loopback, 2 cores)"
	p.Y.Label.Text = "ops/s"
	p.Y.Min = 0
	p.Y.Max *= 1.45 // room for the legend above the lines
	p.Y.Tick.Marker = niceTicks{}
	return p, nil
}

func p99Plot(d dataset) (*plot.Plot, error) {
	p, err := concurrencyPlot(d, func(b benchPoint) float64 { return b.P99Ms })
	if err != nil {
		return nil, err
	}
	p.Title.Text = "p99 latency vs concurrency (chordkv bench, 100 B values, loopback, 2 cores)"
	p.Y.Label.Text = "p99 latency, ms (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, true
	p.Y.Max *= 8 // a log axis: room for the legend means a factor, not a sum
	return p, nil
}

// concurrencyPlot draws one line per series against concurrent callers on a
// log2 axis: one colour per target, solid for get and dashed for put.
func concurrencyPlot(d dataset, y func(benchPoint) float64) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "concurrent callers (log2 scale; connections = min(callers, 8))"
	p.X.Scale = plot.LogScale{}
	minC, maxC := d.Series[0].Points[0].Concurrency, 0
	for _, s := range d.Series {
		minC = min(minC, s.Points[0].Concurrency)
		maxC = max(maxC, s.Points[len(s.Points)-1].Concurrency)
	}
	p.X.Tick.Marker = pow2Ticks(minC, maxC)
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true

	colours := make(map[string]color.Color)
	for _, s := range d.Series {
		xys := make(plotter.XYs, len(s.Points))
		for j, pt := range s.Points {
			xys[j] = plotter.XY{X: float64(pt.Concurrency), Y: y(pt)}
		}
		line, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", s.Key.Target, s.Key.Op, err)
		}
		c, ok := colours[s.Key.Target]
		if !ok {
			c = palette[len(colours)%len(palette)]
			colours[s.Key.Target] = c
		}
		line.Color, pts.Color = c, c
		line.Width = vg.Points(1.5)
		if s.Key.Op == "put" {
			line.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			pts.Shape = draw.TriangleGlyph{}
		} else {
			pts.Shape = draw.CircleGlyph{}
		}
		pts.Radius = vg.Points(3)
		p.Add(line, pts)
		p.Legend.Add(label(s.Key), line, pts)
	}
	return p, nil
}

// label is a series' legend entry.
func label(k seriesKey) string {
	name := map[string]string{
		"ceiling": "bare gRPC ceiling",
		"single":  "chordkv 1 node",
		"ring3":   "chordkv 3 nodes r=3, client routing",
	}[k.Target]
	if name == "" {
		name = k.Target
	}
	return name + ", " + k.Op
}

// palette: colour-blind-safe (Okabe-Ito) colours, one per target.
var palette = []color.Color{
	color.RGBA{R: 0x00, G: 0x72, B: 0xB2, A: 0xFF}, // blue
	color.RGBA{R: 0xD5, G: 0x5E, B: 0x00, A: 0xFF}, // vermillion
	color.RGBA{R: 0x00, G: 0x9E, B: 0x73, A: 0xFF}, // bluish green
	color.RGBA{R: 0xCC, G: 0x79, B: 0xA7, A: 0xFF}, // reddish purple
	color.RGBA{R: 0xE6, G: 0x9F, B: 0x00, A: 0xFF}, // orange
}

// pow2Ticks labels every power of two from lo to hi: the x values the
// sweeps use, which the default ticker (powers of ten) would not name.
func pow2Ticks(lo, hi int) plot.ConstantTicks {
	var ticks plot.ConstantTicks
	for v := 1; v <= hi; v *= 2 {
		if v >= lo {
			ticks = append(ticks, plot.Tick{Value: float64(v), Label: strconv.Itoa(v)})
		}
	}
	return ticks
}

// niceTicks labels every tick of a linear axis, at a step of 1, 2 or 5
// times a power of ten that gives about five to ten of them, written out in
// full (25000, not 2.5e+04): the default ticker labels too few for reading
// values off the figure.
type niceTicks struct{}

func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	step := niceStep(hi - lo)
	if step <= 0 {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step/1e6; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
	}
	return ticks
}

// niceStep is the smallest of 1, 2 or 5 times a power of ten that cuts
// span into at most 10 steps; 0 for an empty or invalid span.
func niceStep(span float64) float64 {
	if !(span > 0) || math.IsInf(span, 0) {
		return 0
	}
	pow := math.Pow(10, math.Floor(math.Log10(span/10)))
	for _, m := range []float64{1, 2, 5, 10} {
		if span/(m*pow) <= 10 {
			return m * pow
		}
	}
	return 10 * pow
}

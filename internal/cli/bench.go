package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/chordkv/chordkv/internal/client"
	"github.com/chordkv/chordkv/internal/transport"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// The operations `chordkv bench --op` drives.
const (
	benchGet   = "get"
	benchPut   = "put"
	benchMixed = "mixed"
	benchDel   = "del"
)

// The request routings `chordkv bench --routing` offers.
const (
	// routingClient sends each request to its key's owner, as learned by
	// walking the ring (internal/client).
	routingClient = "client"
	// routingEndpoint sends each request to the caller's connection to one
	// of --endpoints, which forwards it to the owner when it is not.
	routingEndpoint = "endpoint"
)

// benchFlags are bench's own flags; the client flags (--endpoints,
// --timeout, -o, TLS) come from the root command.
type benchFlags struct {
	kv          kvFlags
	op          string
	ratio       float64
	concurrency int
	connections int
	duration    time.Duration
	keys        int
	valueSize   int
	batch       int
	routing     string
	rate        float64
	cpuProfile  string
}

func (f *benchFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.op, "op", benchGet, "operation: get, put, mixed (gets and puts) or del")
	fl.Float64Var(&f.ratio, "ratio", 0.9, "with --op mixed, the fraction of operations that are gets, in [0,1]")
	fl.IntVar(&f.concurrency, "concurrency", 16, "concurrent callers, each with one call in flight")
	fl.IntVar(&f.connections, "connections", 1, "gRPC connections the callers share, opened round-robin over --endpoints (with --routing client, for calls that cannot go to the owner)")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long to measure (after any preload)")
	fl.IntVar(&f.keys, "keys", 10000, "size of the key space; keys are picked uniformly at random")
	fl.IntVar(&f.valueSize, "value-size", 100, "bytes of random data per value")
	fl.IntVar(&f.batch, "batch", 1, "keys per call: above 1, each caller sends MultiGet/MultiPut/MultiDelete batches of this many random keys (with --op mixed, each batch all gets or all puts), one RPC per owner with --routing client")
	fl.Float64Var(&f.rate, "rate", 0, "operations per second across all callers (keys per second with --batch), spaced evenly; 0 calls back to back. Latency then counts from each call's scheduled start, so a backlog shows in it")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of this bench process over the measured run (not the preload) to this file, for go tool pprof; nodes serve theirs with serve --pprof")
	fl.StringVar(&f.routing, "routing", routingClient, "client: send each request straight to its key's owner, learned from the ring; endpoint: send it to --endpoints round-robin")
	f.kv.register(cmd)
}

// validate checks every flag before anything is dialled, so a typo costs
// no preload.
func (f *benchFlags) validate() (pb.Consistency, error) {
	switch f.op {
	case benchGet, benchPut, benchMixed, benchDel:
	default:
		return 0, usageErrorf("--op must be get, put, mixed or del, not %q", f.op)
	}
	if f.routing != routingClient && f.routing != routingEndpoint {
		return 0, usageErrorf("--routing must be client or endpoint, not %q", f.routing)
	}
	checks := []struct {
		bad bool
		msg string
	}{
		{!(f.ratio >= 0 && f.ratio <= 1), "--ratio must be in [0,1]"}, // also rejects NaN
		{f.concurrency < 1, "--concurrency must be at least 1"},
		{f.connections < 1, "--connections must be at least 1"},
		{f.duration <= 0, "--duration must be positive"},
		{f.keys < 1, "--keys must be at least 1"},
		{f.valueSize < 0, "--value-size must not be negative"},
		{f.batch < 1, "--batch must be at least 1"},
		{!(f.rate >= 0) || math.IsInf(f.rate, 1), "--rate must be a finite number, at least 0"},
		{f.batch > transport.MaxBatchItems, fmt.Sprintf("--batch must be at most %d, the most keys a node accepts in one call", transport.MaxBatchItems)},
	}
	for _, c := range checks {
		if c.bad {
			return 0, usageErrorf("%s", c.msg)
		}
	}
	return f.kv.parse()
}

// needsPreload says whether op reads or deletes keys that must exist first.
func (f *benchFlags) needsPreload() bool { return f.op != benchPut }

// benchJSON is the -o json report. The first six fields are a contract
// with scripts: never rename them; add fields after them.
type benchJSON struct {
	Op        string  `json:"op"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	P999Ms    float64 `json:"p999_ms"`
	Errors    int64   `json:"errors"`

	Ops         int64   `json:"ops"`
	Seconds     float64 `json:"seconds"`
	MeanMs      float64 `json:"mean_ms"`
	MaxMs       float64 `json:"max_ms"`
	Concurrency int     `json:"concurrency"`
	Connections int     `json:"connections"`
	Keys        int     `json:"keys"`
	ValueSize   int     `json:"value_size"`
	Ratio       float64 `json:"ratio"`
	Consistency string  `json:"consistency"`
	Interrupted bool    `json:"interrupted"`
	FirstError  string  `json:"first_error,omitempty"`
	Routing     string  `json:"routing"`
	// Redirects counts measured calls that the node they reached forwarded
	// to the owner (it said so with the chordkv-owner header): with endpoint
	// routing about (n-1)/n of them on an n-node ring, with client routing
	// only those of a stale ring view. Fallbacks counts calls sent to
	// --endpoints because no owner was known or it was unavailable (always 0
	// with endpoint routing).
	Redirects int64 `json:"redirects"`
	Fallbacks int64 `json:"fallbacks"`
	// Batch is --batch. With batches, ops and ops_per_sec count keys, while
	// latency is per RPC (one batch, or with client routing one owner's
	// part of a batch): LatencyPer says which, "op" or "rpc". Redirects
	// and fallbacks then count RPCs too.
	Batch      int    `json:"batch"`
	LatencyPer string `json:"latency_per"`
	// Rate is --rate: the offered operations per second, 0 for callers
	// that call back to back.
	Rate float64 `json:"rate"`
}

func newBenchCmd(opts *clientOptions) *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency of get, put or delete against the ring",
		Long: "Measure client-visible throughput and latency. For get, mixed and del the --keys\n" +
			"keys are written first (--value-size random bytes each, --batch keys per call); then --concurrency callers,\n" +
			"call back to back on uniformly random keys for --duration. With --routing client\n" +
			"(the default) the ring's members are learned from --endpoints and each call goes\n" +
			"straight to its key's owner over one connection per member; a call whose owner is\n" +
			"unknown or unavailable goes the endpoint way. With --routing endpoint each caller\n" +
			"uses one of --connections gRPC connections (round-robin over --endpoints), and the\n" +
			"node it reaches forwards the call when it is not the owner. Every call has the --timeout\n" +
			"deadline. A progress line goes to standard error every second; Ctrl-C ends the run\n" +
			"early and still prints the report. Latency percentiles come from an HDR histogram\n" +
			"(microsecond resolution, 3 significant digits); errors are not in the percentiles.\n" +
			"With --rate the callers' calls are spaced to that total rate (an open-loop load, as\n" +
			"wrk2 offers): measure latency at a given load, or CPU per operation below saturation.",
		Example: "  chordkv bench --op get --concurrency 64 --connections 8 --duration 5s\n" +
			"  chordkv bench --op mixed --ratio 0.95 --endpoints a:7000,b:7000 -o json\n" +
			"  chordkv bench --op put --rate 2000 --concurrency 64 --duration 30s",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cons, err := f.validate()
			if err != nil {
				return err
			}
			if len(opts.endpoints) == 0 {
				return usageErrorf("no endpoints given (--endpoints or CHORDKV_ENDPOINTS)")
			}
			return runBench(cmd, opts, &f, cons)
		},
	}
	f.register(cmd)
	return cmd
}

// runBench dials, preloads, measures and reports.
func runBench(cmd *cobra.Command, opts *clientOptions, f *benchFlags, cons pb.Consistency) error {
	// Ctrl-C ends the run, not the process, so the report still prints.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var profile *os.File
	if f.cpuProfile != "" {
		// Created first, so that a bad path costs no preload.
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: --cpuprofile: %w", err)
		}
		defer pf.Close() // for the returns before the profile is written
		profile = pf
	}
	conns, err := dialBench(opts, f.connections)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	b := newBencher(conns, f, opts.timeout, cons)

	stderr := cmd.ErrOrStderr()
	if f.routing == routingClient {
		b.router = client.New(client.Config{Seeds: opts.endpoints, DialOptions: dialOptions(opts), CallTimeout: opts.timeout})
		defer b.router.Close()
		if err := b.router.Refresh(ctx); err != nil {
			// Not fatal: calls go to --endpoints until a later walk works.
			fmt.Fprintf(stderr, "bench: client routing: %v; sending to --endpoints until a ring walk succeeds\n", err)
		} else {
			fmt.Fprintf(stderr, "bench: client routing over %d ring members\n", len(b.router.Members()))
		}
	}
	if f.needsPreload() {
		fmt.Fprintf(stderr, "bench: preloading %d keys of %d bytes\n", f.keys, f.valueSize)
		if err := b.preload(ctx, f.concurrency); err != nil {
			return err
		}
	}
	// Count redirects and fallbacks of the measurement only, not the preload's.
	var base client.Stats
	if b.router != nil {
		base = b.router.Stats()
	}
	b.fallbacks.Store(0)
	b.redirects.Store(0)
	if profile != nil {
		if err := pprof.StartCPUProfile(profile); err != nil {
			return fmt.Errorf("bench: --cpuprofile %s: %w", f.cpuProfile, err)
		}
	}
	res := b.measure(ctx, f.concurrency, f.duration, stderr)
	if profile != nil {
		pprof.StopCPUProfile()
		if err := profile.Close(); err != nil {
			return fmt.Errorf("bench: --cpuprofile %s: %w", f.cpuProfile, err)
		}
	}
	res.redirects = b.redirects.Load()
	if b.router != nil {
		res.redirects += b.router.Stats().Redirects - base.Redirects
	}
	res.fallbacks = b.fallbacks.Load()
	stop() // a second Ctrl-C while printing kills the process as usual

	report := b.report(f, res)
	if err := printBench(cmd.OutOrStdout(), opts.output, report); err != nil {
		return err
	}
	if res.ops == 0 && res.errs > 0 {
		// Nothing succeeded: a script must not mistake this for a measurement.
		return fmt.Errorf("bench: every call failed, the first with: %w", res.firstErr)
	}
	return nil
}

// dialBench opens n connections, round-robin over the endpoints, with the
// same dial function as every other client command.
func dialBench(opts *clientOptions, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	for i := range n {
		cc, err := dial(opts, opts.endpoints[i%len(opts.endpoints)])
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, cc)
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, cc := range conns {
		cc.Close()
	}
}

// bencher holds what every caller shares. It is read-only once built,
// except for the counters.
type bencher struct {
	clients []pb.KVClient
	keys    [][]byte
	// value is one buffer of random bytes that every put sends: random so
	// that no layer can compress it, shared because its content does not
	// matter and gRPC only reads it.
	value   []byte
	op      string
	ratio   float64
	cons    pb.Consistency
	timeout time.Duration
	// router, when set, sends each call to its key's owner (--routing
	// client); the caller's connection is the fallback.
	router *client.Router
	// batch is the keys per call; above 1 the callers send MultiGet or
	// MultiPut.
	batch int
	// pace, when set (--rate), spaces the callers' calls.
	pace *pacer

	// redirects counts answers from a node that forwarded the call (the
	// chordkv-owner header) on the endpoint path; the router counts its own.
	ops, errs, fallbacks, redirects atomic.Int64
	firstErr                        atomic.Pointer[error]
}

func newBencher(conns []*grpc.ClientConn, f *benchFlags, timeout time.Duration, cons pb.Consistency) *bencher {
	b := &bencher{op: f.op, ratio: f.ratio, cons: cons, timeout: timeout, value: make([]byte, f.valueSize), batch: f.batch}
	if f.rate > 0 {
		b.pace = &pacer{interval: float64(time.Second) / f.rate}
	}
	for _, cc := range conns {
		b.clients = append(b.clients, pb.NewKVClient(cc))
	}
	b.keys = make([][]byte, f.keys)
	for i := range b.keys {
		b.keys[i] = fmt.Appendf(nil, "bench-%09d", i)
	}
	rand.Read(b.value) // never fails since Go 1.24
	return b
}

// call runs one operation on key with the --timeout deadline: to the key's
// owner with client routing, falling back to c (one of --endpoints) when the
// router cannot route it; to c with endpoint routing.
func (b *bencher) call(ctx context.Context, c pb.KVClient, op string, key []byte) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if b.router != nil {
		err := b.router.Do(ctx, key, func(ctx context.Context, cc grpc.ClientConnInterface, opts ...grpc.CallOption) error {
			return b.rpc(ctx, pb.NewKVClient(cc), op, key, opts...)
		})
		if !client.Unroutable(err) {
			return err
		}
		b.fallbacks.Add(1)
	}
	var hdr metadata.MD
	err := b.rpc(ctx, c, op, key, grpc.Header(&hdr))
	if len(hdr.Get(transport.OwnerHeader)) > 0 {
		b.redirects.Add(1)
	}
	return err
}

// pickOp is the next call's operation: --op, or for mixed a get with
// probability --ratio and otherwise a put.
func (b *bencher) pickOp(rng *mrand.Rand) string {
	if b.op != benchMixed {
		return b.op
	}
	if rng.Float64() < b.ratio {
		return benchGet
	}
	return benchPut
}

// rpc is one KV call of op on key over c.
func (b *bencher) rpc(ctx context.Context, c pb.KVClient, op string, key []byte, opts ...grpc.CallOption) error {
	var err error
	switch op {
	case benchGet:
		_, err = c.Get(ctx, &pb.GetRequest{Key: key, Consistency: b.cons}, opts...)
	case benchPut:
		_, err = c.Put(ctx, &pb.PutRequest{Key: key, Value: b.value, Consistency: b.cons}, opts...)
	case benchDel:
		_, err = c.Delete(ctx, &pb.DeleteRequest{Key: key, Consistency: b.cons}, opts...)
	default:
		err = fmt.Errorf("bench: unknown op %q", op)
	}
	return err
}

// preload writes every key once, with the same callers and connections as
// the measurement (and, with --batch, in batches of that size, so that a
// large key space loads at the batched rate), and stops at the first
// failure: measuring gets of keys that are missing would measure NotFound
// answers.
func (b *bencher) preload(ctx context.Context, callers int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	step := int64(max(1, b.batch))
	total := int64(len(b.keys))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range callers {
		c := b.clients[w%len(b.clients)]
		wg.Go(func() {
			for lo := next.Add(step) - step; lo < total && ctx.Err() == nil; lo = next.Add(step) - step {
				if err := b.preloadKeys(ctx, c, b.keys[lo:min(lo+step, total)]); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("bench: interrupted while preloading, nothing measured: %w", err)
		}
		return err
	}
	return nil
}

// preloadKeys writes keys: one Put, or with --batch one MultiPut per owner.
func (b *bencher) preloadKeys(ctx context.Context, c pb.KVClient, keys [][]byte) error {
	if b.batch <= 1 {
		if err := b.call(ctx, c, benchPut, keys[0]); err != nil {
			return fmt.Errorf("preload: put %s: %w", keys[0], err)
		}
		return nil
	}
	for _, g := range b.groupByOwner(keys) {
		o := b.batchCall(ctx, c, benchPut, g, time.Time{})
		if o.err != nil {
			return fmt.Errorf("preload: %w", o.err)
		}
		if o.failed > 0 {
			return fmt.Errorf("preload: %d of %d keys of a multi-put failed, the first: %w", o.failed, len(g), o.itemErr)
		}
	}
	return nil
}

// benchResult is what a measurement produced.
type benchResult struct {
	hist        *hdrhistogram.Histogram
	ops, errs   int64
	elapsed     time.Duration
	interrupted bool
	firstErr    error
	// redirects and fallbacks: see benchJSON.
	redirects, fallbacks int64
}

// measure runs the callers for d or until ctx ends, printing progress to w.
func (b *bencher) measure(ctx context.Context, callers int, d time.Duration, w io.Writer) benchResult {
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	if b.pace != nil {
		b.pace.start = start
	}
	stopProgress := b.progress(runCtx, w, start)

	hists := make([]*hdrhistogram.Histogram, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			seed := mrand.Uint64()
			hists[i] = b.caller(runCtx, b.clients[i%len(b.clients)], mrand.New(mrand.NewPCG(seed, uint64(i))))
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()

	res := benchResult{hist: newLatencyHistogram(), ops: b.ops.Load(), errs: b.errs.Load(), elapsed: elapsed,
		interrupted: ctx.Err() != nil}
	for _, h := range hists {
		res.hist.Merge(h)
	}
	if p := b.firstErr.Load(); p != nil {
		res.firstErr = *p
	}
	return res
}

// caller calls back to back until ctx ends and returns its own latency
// histogram: one per caller, merged at the end, keeps the hot path free of
// locks, and memory bounded (about 140 KB each) however long the run.
func (b *bencher) caller(ctx context.Context, c pb.KVClient, rng *mrand.Rand) *hdrhistogram.Histogram {
	h := newLatencyHistogram()
	// gRPC fails a call whose deadline has passed before the context's own
	// timer fires, so the clock, not only ctx.Err, says the run is over.
	end, _ := ctx.Deadline()
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(end) }
	for !over() {
		var start time.Time // zero: now
		if b.pace != nil {
			var ok bool
			if start, ok = b.pace.wait(ctx, b.batch); !ok {
				break
			}
		}
		op := b.pickOp(rng)
		if b.batch > 1 {
			b.batchRound(ctx, c, op, rng, h, over, start)
			continue
		}
		key := b.keys[rng.IntN(len(b.keys))]
		if start.IsZero() {
			start = time.Now()
		}
		err := b.call(ctx, c, op, key)
		elapsed := time.Since(start)
		if err != nil && over() {
			break // cut off by the end of the run: neither a result nor an error
		}
		if err != nil {
			b.errs.Add(1)
			b.firstErr.CompareAndSwap(nil, &err)
			continue
		}
		b.ops.Add(1)
		_ = h.RecordValue(min(elapsed.Microseconds(), h.HighestTrackableValue()))
	}
	return h
}

// pacer spaces calls at a fixed total rate across callers (--rate): call k
// of the run is due at start + k·interval. Latency counts from that due
// time rather than from the send, as wrk2 does: otherwise a server that
// falls behind would delay the very calls that measure it (coordinated
// omission) and look faster than it is.
type pacer struct {
	start    time.Time
	interval float64 // nanoseconds between calls
	next     atomic.Int64
}

// wait reserves n consecutive calls (a batch counts its keys), sleeps until
// the first is due, and returns its due time; false if ctx ended first.
func (p *pacer) wait(ctx context.Context, n int) (time.Time, bool) {
	k := p.next.Add(int64(n)) - int64(n)
	due := p.start.Add(time.Duration(float64(k) * p.interval))
	d := time.Until(due)
	if d <= 0 {
		return due, ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return due, true
	case <-ctx.Done():
		return due, false
	}
}

// latencyMaxMicros is the largest latency the histogram tells apart; a
// slower call is recorded as this.
const latencyMaxMicros = int64(time.Hour / time.Microsecond)

func newLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, latencyMaxMicros, 3)
}

// progress prints ops/s and errors so far to w about once a second, until
// ctx ends or the returned stop is called; stop waits for the printer.
func (b *bencher) progress(ctx context.Context, w io.Writer, start time.Time) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-t.C:
				s := time.Since(start).Seconds()
				ops := b.ops.Load()
				fmt.Fprintf(w, "bench: %3.0fs  %d ops  %.0f ops/s  %d errors\n", s, ops, float64(ops)/s, b.errs.Load())
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (b *bencher) report(f *benchFlags, res benchResult) benchJSON {
	ms := func(micros int64) float64 { return float64(micros) / 1000 }
	r := benchJSON{
		Op:          f.op,
		P50Ms:       ms(res.hist.ValueAtQuantile(50)),
		P99Ms:       ms(res.hist.ValueAtQuantile(99)),
		P999Ms:      ms(res.hist.ValueAtQuantile(99.9)),
		Errors:      res.errs,
		Ops:         res.ops,
		Seconds:     res.elapsed.Seconds(),
		MeanMs:      res.hist.Mean() / 1000,
		MaxMs:       ms(res.hist.Max()),
		Concurrency: f.concurrency,
		Connections: f.connections,
		Keys:        f.keys,
		ValueSize:   f.valueSize,
		Ratio:       f.ratio,
		Consistency: f.kv.consistency,
		Interrupted: res.interrupted,
		Routing:     f.routing,
		Redirects:   res.redirects,
		Fallbacks:   res.fallbacks,
		Batch:       f.batch,
		LatencyPer:  "op",
		Rate:        f.rate,
	}
	if f.batch > 1 {
		r.LatencyPer = "rpc"
	}
	if res.elapsed > 0 {
		r.OpsPerSec = float64(res.ops) / res.elapsed.Seconds()
	}
	if res.firstErr != nil {
		r.FirstError = res.firstErr.Error()
	}
	return r
}

func printBench(w io.Writer, output string, r benchJSON) error {
	if output == outputJSON {
		return writeJSON(w, r)
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	rows := [][]string{{r.Op, strconv.FormatFloat(r.OpsPerSec, 'f', 0, 64), f(r.P50Ms), f(r.P99Ms), f(r.P999Ms), f(r.MaxMs),
		strconv.FormatInt(r.Ops, 10), strconv.FormatInt(r.Errors, 10), strconv.FormatFloat(r.Seconds, 'f', 2, 64)}}
	if err := writeTable(w, []string{"OP", "OPS/S", "P50 MS", "P99 MS", "P99.9 MS", "MAX MS", "OPS", "ERRORS", "SECONDS"}, rows); err != nil {
		return err
	}
	if r.LatencyPer == "rpc" {
		if _, err := fmt.Fprintf(w, "batches of %d keys: OPS counts keys, latency is per RPC\n", r.Batch); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if r.Rate > 0 {
		if _, err := fmt.Fprintf(w, "offered %s ops/s: latency counts from each call's scheduled start\n", strconv.FormatFloat(r.Rate, 'f', -1, 64)); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if r.FirstError != "" {
		if _, err := fmt.Fprintf(w, "first error: %s\n", r.FirstError); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if r.Interrupted {
		if _, err := fmt.Fprintln(w, "interrupted: the run ended early"); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	return nil
}

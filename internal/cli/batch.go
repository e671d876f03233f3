package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chordkv/chordkv/internal/client"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// Chunking of the --batch commands: a MultiGet, MultiPut or MultiDelete
// carries at most batchItems items and, unless one item alone is larger,
// about batchBytes of keys and values, well under any node's message limit
// (never below 4 MiB) and its per-request caps.
const (
	batchItems = 500
	batchBytes = 2 << 20
	// batchErrorsShown is how many per-item errors the summary shows.
	batchErrorsShown = 5
)

// batchLine is one parsed line of a --batch command's input: `KEY VALUE`
// for put, a bare key (value nil) for get and del.
type batchLine struct {
	line  int // 1-based, for messages
	key   []byte
	value []byte
}

// scanBatchInput reads all of r before anything is sent, so a malformed
// line costs no partial batch, and hands each non-empty line to parse. The
// input is bounded by maxClientMessageBytes in all.
func scanBatchInput(r io.Reader, parse func(n int, text []byte) error) error {
	data, err := io.ReadAll(io.LimitReader(r, maxClientMessageBytes+1))
	if err != nil {
		return fmt.Errorf("read standard input: %w", err)
	}
	if len(data) > maxClientMessageBytes {
		return usageErrorf("standard input is over %d bytes; split it", maxClientMessageBytes)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1) // a line may be as long as the input
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		if err := parse(n, sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read standard input: %w", err)
	}
	return nil
}

// routingAuto is the --routing of put, get and del --batch that picks
// client routing for inputs of more than one request (routeByOwner).
const routingAuto = "auto"

// batchFlags are the --batch and --routing flags of put, get and del.
type batchFlags struct {
	on      bool
	routing string
}

func (f *batchFlags) register(cmd *cobra.Command, usage string) {
	cmd.Flags().BoolVar(&f.on, "batch", false, usage)
	cmd.Flags().StringVar(&f.routing, "routing", routingAuto, "with --batch: client sends each request straight to its keys' owner, learned by walking the ring from --endpoints, to several owners at once; "+
		"endpoint sends every request to --endpoints, one at a time; auto is client when the input fills more than one request")
}

// route is how a --batch command run with these flags sends its calls.
func (f *batchFlags) route(cmd *cobra.Command) batchRoute {
	return batchRoute{routing: f.routing, stderr: cmd.ErrOrStderr()}
}

// readBatch is every --batch command's prologue: the --consistency and
// --routing flags, then the whole input parsed by parse, all before any
// call.
func readBatch(cmd *cobra.Command, f *kvFlags, bf *batchFlags, parse func(io.Reader) ([]batchLine, error)) (pb.Consistency, []batchLine, error) {
	cons, err := f.parse()
	if err != nil {
		return 0, nil, err
	}
	switch bf.routing {
	case routingAuto, routingClient, routingEndpoint:
	default:
		return 0, nil, usageErrorf("--routing must be auto, client or endpoint, not %q", bf.routing)
	}
	lines, err := parse(cmd.InOrStdin())
	return cons, lines, err
}

// parseBatchKeys reads the input of get --batch and del --batch: each
// line, as it is, is one key.
func parseBatchKeys(r io.Reader) ([]batchLine, error) {
	var lines []batchLine
	err := scanBatchInput(r, func(n int, text []byte) error {
		// A copy: the scanner overwrites its buffer on the next Scan.
		lines = append(lines, batchLine{line: n, key: bytes.Clone(text)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lines, nil
}

// chunkBatch splits lines into request-sized chunks.
func chunkBatch(lines []batchLine) [][]batchLine {
	var chunks [][]batchLine
	start, size := 0, 0
	for i, l := range lines {
		n := len(l.key) + len(l.value)
		if i > start && (i-start == batchItems || size+n > batchBytes) {
			chunks = append(chunks, lines[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(lines) {
		chunks = append(chunks, lines[start:])
	}
	return chunks
}

// batchReport collects what every --batch command reports beyond its own
// counts: the failed items, the first few errors, and why it stopped early.
type batchReport struct {
	name   string // "put --batch", for messages
	noun   string // what the lines are: "pairs" or "keys"
	total  int
	failed int
	errors []string // the first batchErrorsShown, never nil
	stop   error    // set when no endpoint answered: the rest is not sent
	// onFail, when set, sees every failed line with its message, for a
	// command that reports each line.
	onFail func(l batchLine, msg string)
}

func newBatchReport(name, noun string, total int) *batchReport {
	return &batchReport{name: name, noun: noun, total: total, errors: []string{}}
}

func (b *batchReport) fail(l batchLine, msg string) {
	b.failed++
	if b.onFail != nil {
		b.onFail(l, msg)
	}
	if len(b.errors) < batchErrorsShown {
		b.errors = append(b.errors, fmt.Sprintf("line %d (key %q): %s", l.line, l.key, msg))
	}
}

// exit is the command's error once its output is printed: exit 4 when it
// stopped early, 1 when some item failed. done is how many items
// succeeded, described by the participle (e.g. "written").
func (b *batchReport) exit(done int, participle string) error {
	switch {
	case b.stop != nil:
		return withExitCode(ExitUnavailable, fmt.Errorf("%s: %d of %d %s %s, then stopped: %w", b.name, done, b.total, b.noun, participle, b.stop))
	case b.failed > 0:
		return withExitCode(ExitFailure, fmt.Errorf("%s: %d of %d %s not %s, the first: %s", b.name, b.failed, b.total, b.noun, participle, b.errors[0]))
	}
	return nil
}

// sendBatch sends lines in chunks and hands each line's result to each. A
// line each asks to retry goes out again in a later call. A call that fails
// as a whole fails its lines; once no endpoint answered, or the command was
// cancelled, the rest is not sent and counts as failed.
//
// With client routing (see routeByOwner) the lines are grouped by their
// key's owner, as learned by walking the ring from the endpoints, and each
// owner's further into lanes by key (laneOf); up to batchOwnersAtOnce lanes
// are sent at once, each its chunks one after another: so a key's lines
// keep their input order, and a repeated key's last line is the value that
// stays. Without it, or when the walk fails, every chunk goes through the
// endpoints (failover), one at a time, as one lane.
func sendBatch[R any](ctx context.Context, opts *clientOptions, route batchRoute, b *batchReport, lines []batchLine,
	call batchCall[R], each func(l batchLine, r R) (retry bool)) {
	s := &batchSender[R]{opts: opts, b: b, call: call, each: each}
	groups := [][]batchLine{lines}
	if routeByOwner(route.routing, len(lines)) {
		r := client.New(client.Config{Seeds: opts.endpoints, DialOptions: dialOptions(opts), CallTimeout: opts.timeout})
		defer r.Close()
		// The whole walk gets one --timeout: members whose advertised
		// addresses this client cannot reach (NAT, containers) would
		// otherwise cost a timeout each before the endpoints take over.
		walkCtx, cancel := context.WithTimeout(ctx, opts.timeout)
		err := r.Refresh(walkCtx)
		cancel()
		if err == nil {
			s.router = r
			groups = groupBy(lines, func(l batchLine) string {
				m, _ := r.Owner(l.key)
				return fmt.Sprintf("%s/%d", m.Addr, laneOf(l.key))
			})
		} else {
			// Not a failure: the endpoints serve the lines, and say why
			// when they cannot.
			fmt.Fprintf(route.stderr, "chordkv: %s: sending through --endpoints, as the ring walk failed (--routing endpoint skips it): %v\n", b.name, err)
		}
	}
	limit := make(chan struct{}, batchOwnersAtOnce)
	var wg sync.WaitGroup
	for _, g := range groups {
		limit <- struct{}{}
		wg.Go(func() {
			defer func() { <-limit }()
			s.sendGroup(ctx, g)
		})
	}
	wg.Wait()
	if batchRouted != nil {
		st := batchRouteStats{toOwner: s.toOwnerCalls.Load(), viaEndpoints: s.endpointCalls.Load()}
		if s.router != nil {
			st.redirects = s.router.Stats().Redirects
		}
		batchRouted(st)
	}
}

// batchRouted, when set (by tests), hears how each sendBatch's calls went.
var batchRouted func(batchRouteStats)

// batchRouteStats counts a sendBatch's calls: those answered by the owner
// the router chose, those sent through the endpoints, and the answers
// whose chordkv-owner header said a node forwarded some of the keys.
type batchRouteStats struct {
	toOwner, viaEndpoints, redirects int64
}

// batchRoute is how a --batch command sends its calls: its --routing, and
// where to note that client routing could not be set up.
type batchRoute struct {
	routing string
	stderr  io.Writer
}

// batchCall is one MultiGet, MultiPut or MultiDelete of chunk's keys over
// c; it passes callOpts on to the generated client method.
type batchCall[R any] func(ctx context.Context, c pb.KVClient, chunk []batchLine, callOpts ...grpc.CallOption) ([]R, error)

// With client routing, each owner's lines are split further into
// batchLanesPerOwner lanes by a hash of the key, each lane sent one call at
// a time, and up to batchOwnersAtOnce lanes at once: a key always takes the
// same lane, so its lines keep their order, while an owner has several
// calls to work on (a node's group commit then shares fsyncs between
// them).
const (
	batchLanesPerOwner = 4
	batchOwnersAtOnce  = 16
)

// laneOf is key's lane among its owner's (batchLanesPerOwner).
func laneOf(key []byte) int {
	h := fnv.New32a()
	h.Write(key)
	return int(h.Sum32() % batchLanesPerOwner)
}

// routeByOwner says whether a --batch command of n lines routes its
// requests to their keys' owners. auto does when the lines fill more than
// one request: the ring walk that teaches the client its members costs one
// call per member, more than it saves a single request.
func routeByOwner(routing string, n int) bool {
	switch routing {
	case routingClient:
		return true
	case routingAuto:
		return n > batchItems
	}
	return false
}

// groupBy splits items by the group each belongs to, each group in input
// order, the groups in the order their first item came: the --batch
// commands' lines by owner and lane, bench's batches by owner.
func groupBy[T any](items []T, group func(T) string) [][]T {
	index := map[string]int{}
	var groups [][]T
	for _, it := range items {
		g := group(it)
		i, ok := index[g]
		if !ok {
			i = len(groups)
			index[g] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], it)
	}
	return groups
}

// batchSender is one sendBatch: its groups' goroutines share the report,
// and each, under mu.
type batchSender[R any] struct {
	opts   *clientOptions
	router *client.Router // nil: every call goes through the endpoints
	call   batchCall[R]
	each   func(l batchLine, r R) (retry bool)

	toOwnerCalls, endpointCalls atomic.Int64

	mu sync.Mutex
	b  *batchReport
}

// errNotRouted is toOwner's "send this chunk through the endpoints".
var errNotRouted = errors.New("not routed to the owner")

// sendGroup sends one group's lines in chunks, one call at a time: to the
// owner while the router can reach it, then, for the rest of the group,
// through the endpoints, so that an owner that died after the ring walk
// costs one failed attempt, not one per chunk.
func (s *batchSender[R]) sendGroup(ctx context.Context, lines []batchLine) {
	pending := chunkBatch(lines)
	direct := s.router != nil
	for len(pending) > 0 {
		chunk := pending[0]
		pending = pending[1:]
		if s.stopped() {
			s.failAll(chunk, "not sent: an earlier request found no endpoint answering")
			continue
		}
		var results []R
		var err error
		if direct {
			results, err = s.toOwner(ctx, chunk)
			direct = !errors.Is(err, errNotRouted)
			if direct {
				s.toOwnerCalls.Add(1)
			}
		}
		if !direct {
			s.endpointCalls.Add(1)
			results, err = failover(ctx, s.opts, pb.NewKVClient, func(ctx context.Context, c pb.KVClient) ([]R, error) {
				return s.call(ctx, c, chunk)
			})
		}
		if err == nil && len(results) != len(chunk) {
			err = fmt.Errorf("node answered %d results for %d items", len(results), len(chunk))
		}
		if again := s.record(chunk, results, err); len(again) > 0 {
			pending = append([][]batchLine{again}, pending...)
		}
	}
}

// toOwner sends chunk to its first key's owner, under the --timeout
// deadline. It returns errNotRouted when the owner is unknown, did not
// answer, or answered too late: cases in which failover would try the next
// endpoint.
func (s *batchSender[R]) toOwner(ctx context.Context, chunk []batchLine) ([]R, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.timeout)
	defer cancel()
	owner, _ := s.router.Owner(chunk[0].key)
	var results []R
	var callErr error
	err := s.router.Do(ctx, chunk[0].key, func(ctx context.Context, cc grpc.ClientConnInterface, callOpts ...grpc.CallOption) error {
		results, callErr = s.call(ctx, pb.NewKVClient(cc), chunk, callOpts...)
		return callErr
	})
	switch {
	case err == nil:
		return results, nil
	case client.Unroutable(err) || status.Code(callErr) == codes.DeadlineExceeded:
		return nil, errNotRouted
	case callErr != nil:
		return nil, &nodeError{addr: owner.Addr, err: callErr, hint: tlsHint(callErr, s.opts.tls.Enabled())}
	}
	return nil, err
}

// record hands a call's answer to each, or fails the chunk with err, and
// returns the lines to ask for again.
func (s *batchSender[R]) record(chunk []batchLine, results []R, err error) (again []batchLine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if exitCode(err) == ExitUnavailable || errors.Is(err, context.Canceled) {
			s.b.stop = err
		}
		for _, l := range chunk {
			s.b.fail(l, err.Error())
		}
		return nil
	}
	for i, r := range results {
		if s.each(chunk[i], r) {
			again = append(again, chunk[i])
		}
	}
	if len(again) == len(chunk) {
		// No progress: asking again would loop forever.
		for _, l := range again {
			s.b.fail(l, "the node answered every item of the request with \"ask again\"")
		}
		return nil
	}
	return again
}

func (s *batchSender[R]) stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.stop != nil
}

func (s *batchSender[R]) failAll(chunk []batchLine, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range chunk {
		s.b.fail(l, msg)
	}
}

// writeBatch sends the lines of put --batch or del --batch with call and
// returns how many writes were acknowledged; b has the rest.
func writeBatch(ctx context.Context, opts *clientOptions, route batchRoute, b *batchReport, lines []batchLine,
	call batchCall[*pb.PutResult]) (acked int) {
	sendBatch(ctx, opts, route, b, lines, call, func(l batchLine, r *pb.PutResult) bool {
		if r.GetError() != "" {
			b.fail(l, r.GetError())
		} else {
			acked++
		}
		return false
	})
	return acked
}

// batchKeys are the keys of a chunk, as MultiGet and MultiDelete take them.
func batchKeys(chunk []batchLine) [][]byte {
	keys := make([][]byte, len(chunk))
	for i, l := range chunk {
		keys[i] = l.key
	}
	return keys
}

// printBatchSummary prints a write batch's outcome: v as JSON, or the
// one-line text summary.
func printBatchSummary(cmd *cobra.Command, opts *clientOptions, v any, format string, args ...any) error {
	if opts.output == outputJSON {
		return writeJSON(cmd.OutOrStdout(), v)
	}
	if _, err := fmt.Fprintf(cmd.OutOrStdout(), format, args...); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// batchArgs refuses positional arguments with --batch, whose input is
// standard input, and checks them with plain without it, where --routing
// has no meaning: a single key goes to --endpoints, which forward it.
func batchArgs(batch *batchFlags, refusal string, plain cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if !batch.on {
			if cmd.Flags().Changed("routing") {
				return usageErrorf("--routing applies only with --batch")
			}
			return plain(cmd, args)
		}
		if len(args) > 0 {
			return usageErrorf("%s", refusal)
		}
		return nil
	}
}

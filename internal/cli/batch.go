package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

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

// readBatch is every --batch command's prologue: the --consistency flag,
// then the whole input parsed by parse, all before any call.
func readBatch(cmd *cobra.Command, f *kvFlags, parse func(io.Reader) ([]batchLine, error)) (pb.Consistency, []batchLine, error) {
	cons, err := f.parse()
	if err != nil {
		return 0, nil, err
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

// sendBatch sends lines in chunks, each one call with the usual endpoint
// failover and its own --timeout deadline (dialAndCall), and hands each
// line's result to each. A line each asks to retry goes out again in a
// later call. A call that fails as a whole fails its lines; once no
// endpoint answered, or the command was cancelled, the rest is not sent
// and counts as failed.
func sendBatch[R any](ctx context.Context, opts *clientOptions, b *batchReport, lines []batchLine,
	call func(context.Context, pb.KVClient, []batchLine) ([]R, error), each func(l batchLine, r R) (retry bool)) {
	pending := chunkBatch(lines)
	for len(pending) > 0 {
		chunk := pending[0]
		pending = pending[1:]
		if b.stop != nil {
			for _, l := range chunk {
				b.fail(l, "not sent: an earlier request found no endpoint answering")
			}
			continue
		}
		results, err := failover(ctx, opts, pb.NewKVClient, func(ctx context.Context, c pb.KVClient) ([]R, error) {
			return call(ctx, c, chunk)
		})
		if err == nil && len(results) != len(chunk) {
			err = fmt.Errorf("node answered %d results for %d items", len(results), len(chunk))
		}
		if err != nil {
			if exitCode(err) == ExitUnavailable || errors.Is(err, context.Canceled) {
				b.stop = err
			}
			for _, l := range chunk {
				b.fail(l, err.Error())
			}
			continue
		}
		var again []batchLine
		for i, r := range results {
			if each(chunk[i], r) {
				again = append(again, chunk[i])
			}
		}
		switch {
		case len(again) == len(chunk):
			// No progress: asking again would loop forever.
			for _, l := range again {
				b.fail(l, "the node answered every item of the request with \"ask again\"")
			}
		case len(again) > 0:
			pending = append([][]batchLine{again}, pending...)
		}
	}
}

// writeBatch sends the lines of put --batch or del --batch with call and
// returns how many writes were acknowledged; b has the rest.
func writeBatch(ctx context.Context, opts *clientOptions, b *batchReport, lines []batchLine,
	call func(context.Context, pb.KVClient, []batchLine) ([]*pb.PutResult, error)) (acked int) {
	sendBatch(ctx, opts, b, lines, call, func(l batchLine, r *pb.PutResult) bool {
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
// standard input, and checks them with plain without it.
func batchArgs(batch *bool, refusal string, plain cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if !*batch {
			return plain(cmd, args)
		}
		if len(args) > 0 {
			return usageErrorf("%s", refusal)
		}
		return nil
	}
}

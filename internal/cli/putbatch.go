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

// Chunking of `chordkv put --batch`: a MultiPut carries at most
// putBatchItems pairs and, unless one pair alone is larger, about
// putBatchBytes of keys and values, well under any node's message limit
// (never below 4 MiB) and its per-request caps.
const (
	putBatchItems = 500
	putBatchBytes = 2 << 20
	// putBatchErrors is how many per-item errors the summary shows.
	putBatchErrors = 5
)

// putBatchJSON is the -o json shape of `chordkv put --batch`.
type putBatchJSON struct {
	Written int      `json:"written"`
	Failed  int      `json:"failed"`
	Errors  []string `json:"errors"` // the first few, never null
}

// batchLine is one parsed `KEY VALUE` line.
type batchLine struct {
	line  int // 1-based, for messages
	key   []byte
	value []byte
}

// parseBatchLines reads every line of r before anything is written, so a
// malformed line costs no partial write. The input is bounded by
// maxClientMessageBytes in all.
func parseBatchLines(r io.Reader) ([]batchLine, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxClientMessageBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	if len(data) > maxClientMessageBytes {
		return nil, usageErrorf("standard input is over %d bytes; split it", maxClientMessageBytes)
	}
	var lines []batchLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1) // a line may be as long as the input
	for n := 1; sc.Scan(); n++ {
		text := sc.Bytes()
		if len(text) == 0 {
			continue
		}
		key, value, ok := bytes.Cut(text, []byte(" "))
		switch {
		case !ok:
			return nil, usageErrorf("standard input line %d: no space between key and value (want `KEY VALUE`)", n)
		case len(key) == 0:
			return nil, usageErrorf("standard input line %d: key is empty (the line starts with a space)", n)
		}
		// Copies: the scanner overwrites its buffer on the next Scan.
		lines = append(lines, batchLine{line: n, key: bytes.Clone(key), value: bytes.Clone(value)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	return lines, nil
}

// chunkBatch splits lines into MultiPut-sized chunks.
func chunkBatch(lines []batchLine) [][]batchLine {
	var chunks [][]batchLine
	start, size := 0, 0
	for i, l := range lines {
		n := len(l.key) + len(l.value)
		if i > start && (i-start == putBatchItems || size+n > putBatchBytes) {
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

// runPutBatch is `chordkv put --batch`.
func runPutBatch(cmd *cobra.Command, opts *clientOptions, f *kvFlags) error {
	cons, err := f.parse()
	if err != nil {
		return err
	}
	lines, err := parseBatchLines(cmd.InOrStdin())
	if err != nil {
		return err
	}
	res := putBatchJSON{Errors: []string{}}
	fail := func(l batchLine, msg string) {
		res.Failed++
		if len(res.Errors) < putBatchErrors {
			res.Errors = append(res.Errors, fmt.Sprintf("line %d (key %q): %s", l.line, l.key, msg))
		}
	}
	var stopErr error // set when no endpoint answered: the rest is not sent
	for _, chunk := range chunkBatch(lines) {
		if stopErr != nil {
			res.Failed += len(chunk)
			continue
		}
		items := make([]*pb.KeyValue, len(chunk))
		for i, l := range chunk {
			items[i] = &pb.KeyValue{Key: l.key, Value: l.value}
		}
		// Each chunk has its own --timeout deadline (dialAndCall).
		out, err := failover(cmd.Context(), opts, pb.NewKVClient, func(ctx context.Context, c pb.KVClient) (*pb.MultiPutResponse, error) {
			return c.MultiPut(ctx, &pb.MultiPutRequest{Items: items, Consistency: cons})
		})
		if err == nil && len(out.GetResults()) != len(chunk) {
			err = fmt.Errorf("node answered %d results for %d items", len(out.GetResults()), len(chunk))
		}
		if err != nil {
			if exitCode(err) == ExitUnavailable || errors.Is(err, context.Canceled) {
				stopErr = err
			}
			for _, l := range chunk {
				fail(l, err.Error())
			}
			continue
		}
		for i, r := range out.GetResults() {
			if r.GetError() != "" {
				fail(chunk[i], r.GetError())
			} else {
				res.Written++
			}
		}
	}
	if err := printPutBatch(cmd, opts, res); err != nil {
		return err
	}
	switch {
	case stopErr != nil:
		return withExitCode(ExitUnavailable, fmt.Errorf("put --batch: wrote %d of %d pairs, then stopped: %w", res.Written, len(lines), stopErr))
	case res.Failed > 0:
		return withExitCode(ExitFailure, fmt.Errorf("put --batch: %d of %d pairs not written, the first: %s", res.Failed, len(lines), res.Errors[0]))
	}
	return nil
}

func printPutBatch(cmd *cobra.Command, opts *clientOptions, res putBatchJSON) error {
	if opts.output == outputJSON {
		return writeJSON(cmd.OutOrStdout(), res)
	}
	if _, err := fmt.Fprintf(cmd.OutOrStdout(), "written %d, failed %d\n", res.Written, res.Failed); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

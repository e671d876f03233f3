package cli

import (
	"bytes"
	"context"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// putBatchJSON is the -o json shape of `chordkv put --batch`.
type putBatchJSON struct {
	Written int      `json:"written"`
	Failed  int      `json:"failed"`
	Errors  []string `json:"errors"` // the first few, never null
}

// parseBatchLines reads the `KEY VALUE` lines of put --batch.
func parseBatchLines(r io.Reader) ([]batchLine, error) {
	var lines []batchLine
	err := scanBatchInput(r, func(n int, text []byte) error {
		key, value, ok := bytes.Cut(text, []byte(" "))
		switch {
		case !ok:
			return usageErrorf("standard input line %d: no space between key and value (want `KEY VALUE`)", n)
		case len(key) == 0:
			return usageErrorf("standard input line %d: key is empty (the line starts with a space)", n)
		}
		// Copies: the scanner overwrites its buffer on the next Scan.
		lines = append(lines, batchLine{line: n, key: bytes.Clone(key), value: bytes.Clone(value)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lines, nil
}

// runPutBatch is `chordkv put --batch`.
func runPutBatch(cmd *cobra.Command, opts *clientOptions, f *kvFlags, bf *batchFlags) error {
	cons, lines, err := readBatch(cmd, f, bf, parseBatchLines)
	if err != nil {
		return err
	}
	b := newBatchReport("put --batch", "pairs", len(lines))
	written := writeBatch(cmd.Context(), opts, bf.route(cmd), b, lines, func(ctx context.Context, c pb.KVClient, chunk []batchLine, callOpts ...grpc.CallOption) ([]*pb.PutResult, error) {
		items := make([]*pb.KeyValue, len(chunk))
		for i, l := range chunk {
			items[i] = &pb.KeyValue{Key: l.key, Value: l.value}
		}
		out, err := c.MultiPut(ctx, &pb.MultiPutRequest{Items: items, Consistency: cons}, callOpts...)
		return out.GetResults(), err
	})
	res := putBatchJSON{Written: written, Failed: b.failed, Errors: b.errors}
	if err := printBatchSummary(cmd, opts, res, "written %d, failed %d\n", res.Written, res.Failed); err != nil {
		return err
	}
	return b.exit(written, "written")
}

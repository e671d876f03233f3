package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/chordkv/chordkv/internal/transport"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// getBatchJSON is the -o json shape of `chordkv get --batch`.
type getBatchJSON struct {
	Found   int                `json:"found"`
	Missing int                `json:"missing"`
	Failed  int                `json:"failed"`
	Items   []getBatchItemJSON `json:"items"`  // one per input key, in input order
	Errors  []string           `json:"errors"` // the first few, never null
}

// getBatchItemJSON is one key's answer in getBatchJSON: the value (base64,
// "" when empty) and version of a found key, the error of a failed one,
// neither for a missing one.
type getBatchItemJSON struct {
	Key     string         `json:"key"`
	Found   bool           `json:"found"`
	Value   []byte         `json:"value,omitzero"`
	Version *kvVersionJSON `json:"version,omitzero"`
	Error   string         `json:"error,omitzero"`
}

// runGetBatch is `chordkv get --batch`.
func runGetBatch(cmd *cobra.Command, opts *clientOptions, f *kvFlags, bf *batchFlags) error {
	cons, lines, err := readBatch(cmd, f, bf, parseBatchKeys)
	if err != nil {
		return err
	}
	text := opts.output != outputJSON
	res := getBatchJSON{Items: make([]getBatchItemJSON, 0, len(lines))}
	byLine := make(map[int]getBatchItemJSON, len(lines)) // results arrive out of input order when retried
	b := newBatchReport("get --batch", "keys", len(lines))
	b.onFail = func(l batchLine, msg string) {
		byLine[l.line] = getBatchItemJSON{Key: string(l.key), Error: msg}
	}
	sendBatch(cmd.Context(), opts, bf.route(cmd), b, lines, func(ctx context.Context, c pb.KVClient, chunk []batchLine, callOpts ...grpc.CallOption) ([]*pb.GetResult, error) {
		out, err := c.MultiGet(ctx, &pb.MultiGetRequest{Keys: batchKeys(chunk), Consistency: cons}, callOpts...)
		return out.GetResults(), err
	}, func(l batchLine, r *pb.GetResult) bool {
		switch {
		case leftOut(r):
			return true
		case r.GetError() != "":
			b.fail(l, r.GetError())
		case !r.GetFound():
			res.Missing++
			byLine[l.line] = getBatchItemJSON{Key: string(l.key)}
		default:
			v, err := decodeVersionJSON(r.GetVersion())
			if err != nil {
				b.fail(l, err.Error())
				break
			}
			if msg := unprintableLine(l.key, r.GetValue()); text && msg != "" {
				b.fail(l, msg)
				break
			}
			res.Found++
			byLine[l.line] = getBatchItemJSON{Key: string(l.key), Found: true, Value: nonNilBytes(r.GetValue()), Version: &v}
		}
		return false
	})
	for _, l := range lines {
		res.Items = append(res.Items, byLine[l.line])
	}
	res.Failed, res.Errors = b.failed, b.errors
	if err := printGetBatch(cmd, opts, res); err != nil {
		return err
	}
	if err := b.exit(res.Found, "read"); err != nil {
		return err
	}
	if res.Missing > 0 {
		return withExitCode(ExitNotFound, fmt.Errorf("get --batch: %d of %d keys not found", res.Missing, len(lines)))
	}
	return nil
}

// leftOut reports whether a MultiGet item was left out because the values
// before it filled the response, so the key is to be asked for again. Nodes
// that predate the response_full flag say so only in the error, which a
// node that forwarded the key to its owner passes on behind the owner's
// address.
func leftOut(r *pb.GetResult) bool {
	return r.GetResponseFull() || strings.HasSuffix(r.GetError(), transport.ErrResponseFull.Error())
}

// unprintableLine says why key and value cannot be printed as one `KEY
// VALUE` line that put --batch reads back as the same pair, or "" when
// they can.
func unprintableLine(key, value []byte) string {
	switch {
	case bytes.IndexByte(key, ' ') >= 0:
		return "key has a space; read it with get KEY"
	case bytes.IndexByte(value, '\n') >= 0:
		return "value has a newline; read it with get KEY"
	case bytes.HasSuffix(value, []byte("\r")):
		// put --batch, like any line reader, drops a CR before the newline.
		return "value ends with a carriage return; read it with get KEY"
	}
	return ""
}

// printGetBatch prints res as JSON, or as text: a `KEY VALUE` line per
// found key on standard output, which put --batch reads back, and the
// counts on standard error, out of the pipe.
func printGetBatch(cmd *cobra.Command, opts *clientOptions, res getBatchJSON) error {
	if opts.output == outputJSON {
		return writeJSON(cmd.OutOrStdout(), res)
	}
	w := bufio.NewWriter(cmd.OutOrStdout())
	for _, it := range res.Items {
		if it.Found {
			fmt.Fprintf(w, "%s %s\n", it.Key, it.Value)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write values: %w", err)
	}
	if _, err := fmt.Fprintf(cmd.ErrOrStderr(), "found %d, missing %d, failed %d\n", res.Found, res.Missing, res.Failed); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

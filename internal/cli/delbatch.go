package cli

import (
	"context"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// delBatchJSON is the -o json shape of `chordkv del --batch`.
type delBatchJSON struct {
	Deleted int      `json:"deleted"`
	Failed  int      `json:"failed"`
	Errors  []string `json:"errors"` // the first few, never null
}

// runDelBatch is `chordkv del --batch`.
func runDelBatch(cmd *cobra.Command, opts *clientOptions, f *kvFlags, bf *batchFlags) error {
	cons, lines, err := readBatch(cmd, f, bf, parseBatchKeys)
	if err != nil {
		return err
	}
	b := newBatchReport("del --batch", "keys", len(lines))
	deleted := writeBatch(cmd.Context(), opts, bf.route(cmd), b, lines, func(ctx context.Context, c pb.KVClient, chunk []batchLine, callOpts ...grpc.CallOption) ([]*pb.PutResult, error) {
		out, err := c.MultiDelete(ctx, &pb.MultiDeleteRequest{Keys: batchKeys(chunk), Consistency: cons}, callOpts...)
		return out.GetResults(), err
	})
	res := delBatchJSON{Deleted: deleted, Failed: b.failed, Errors: b.errors}
	if err := printBatchSummary(cmd, opts, res, "deleted %d, failed %d\n", res.Deleted, res.Failed); err != nil {
		return err
	}
	return b.exit(deleted, "deleted")
}

package cli

import (
	"context"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// lookupJSON is the -o json shape of `chordkv lookup`.
type lookupJSON struct {
	Key   string   `json:"key"`
	ID    string   `json:"id"`
	Owner string   `json:"owner"`
	Hops  int      `json:"hops"`
	Path  []string `json:"path"`
}

func newLookupCmd(opts *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "lookup KEY",
		Short:   "Find the node that owns KEY and the route to it",
		Example: "  chordkv lookup greeting --endpoints 127.0.0.1:7000,127.0.0.1:7001",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			res, err := withFailover(cmd.Context(), opts, func(ctx context.Context, c pb.AdminClient) (*pb.LookupResponse, error) {
				return c.Lookup(ctx, &pb.LookupRequest{Key: []byte(key)})
			})
			if err != nil {
				return err
			}
			out := lookupJSON{Key: key, ID: res.GetId(), Owner: res.GetOwner(), Hops: int(res.GetHops()), Path: nonNil(res.GetPath())}
			if opts.output == outputJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			return writeTable(cmd.OutOrStdout(), []string{"KEY", "ID", "OWNER", "HOPS", "PATH"}, [][]string{
				{out.Key, out.ID, out.Owner, strconv.Itoa(out.Hops), strings.Join(out.Path, " -> ")},
			})
		},
	}
}

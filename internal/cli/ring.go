package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chordkv/chordkv/internal/client"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// ringJSON is the -o json shape of `chordkv ring`.
type ringJSON struct {
	Nodes []ringNodeJSON `json:"nodes"`
}

type ringNodeJSON struct {
	ID          string   `json:"id"`
	Addr        string   `json:"addr"`
	Predecessor string   `json:"predecessor"`
	Successors  []string `json:"successors"`
}

func newRingCmd(opts *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "ring",
		Short:   "List every ring member in ring order, walking successor pointers",
		Example: "  chordkv ring --endpoints 127.0.0.1:7000\n  chordkv ring -o json",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			nodes, err := walkRing(cmd.Context(), opts)
			if err != nil {
				return err
			}
			out := ringJSON{Nodes: make([]ringNodeJSON, len(nodes))}
			for i, n := range nodes {
				out.Nodes[i] = ringNodeJSON{ID: n.GetId(), Addr: n.GetAddr(), Predecessor: n.GetPredecessor(), Successors: nonNil(n.GetSuccessors())}
			}
			if opts.output == outputJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			rows := make([][]string, len(out.Nodes))
			for i, n := range out.Nodes {
				rows[i] = []string{n.ID, n.Addr, orNone(n.Predecessor), orNone(strings.Join(n.Successors, ","))}
			}
			return writeTable(cmd.OutOrStdout(), []string{"ID", "ADDR", "PREDECESSOR", "SUCCESSORS"}, rows)
		},
	}
}

// walkRing starts at the first endpoint that answers and follows each
// node's first live successor until it comes back to a node already seen
// (client.Walk, which the client-side Router walks with too).
func walkRing(ctx context.Context, opts *clientOptions) ([]*pb.StatusResponse, error) {
	start, err := withFailover(ctx, opts, getStatus)
	if err != nil {
		return nil, err
	}
	status := func(ctx context.Context, addr string) (*pb.StatusResponse, error) {
		return callNode(ctx, opts, addr, getStatus)
	}
	nodes, err := client.Walk(ctx, start, status, client.MaxWalk)
	if err != nil {
		return nil, withExitCode(ExitUnavailable, fmt.Errorf("%w (each call's deadline: %v)", err, opts.timeout))
	}
	return nodes, nil
}

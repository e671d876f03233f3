package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// maxRingWalk bounds the ring walk, so a corrupt ring whose successor
// pointers never return to the start cannot keep the command running.
const maxRingWalk = 100000

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
// node's first live successor until it comes back to a node already seen.
func walkRing(ctx context.Context, opts *clientOptions) ([]*pb.StatusResponse, error) {
	start, err := withFailover(ctx, opts, getStatus)
	if err != nil {
		return nil, err
	}
	nodes := []*pb.StatusResponse{start}
	seen := map[string]bool{start.GetAddr(): true}
	for cur := start; len(nodes) < maxRingWalk; {
		next, err := nextLive(ctx, opts, cur)
		if err != nil {
			return nil, err
		}
		if next == nil || seen[next.GetAddr()] {
			return nodes, nil
		}
		seen[next.GetAddr()] = true
		nodes = append(nodes, next)
		cur = next
	}
	return nodes, nil
}

// nextLive asks cur's successors in order and returns the first that
// answers; nil when cur knows no successor (a ring of one).
func nextLive(ctx context.Context, opts *clientOptions, cur *pb.StatusResponse) (*pb.StatusResponse, error) {
	succs := slices.DeleteFunc(slices.Clone(cur.GetSuccessors()), func(a string) bool { return a == cur.GetAddr() })
	if len(succs) == 0 {
		return nil, nil
	}
	var failures []string
	for _, addr := range succs {
		st, err := callNode(ctx, opts, addr, getStatus)
		if err == nil {
			return st, nil
		}
		failures = append(failures, err.Error())
	}
	return nil, withExitCode(ExitUnavailable, fmt.Errorf("ring walk stopped after %s: no successor answered within %v: %s",
		cur.GetAddr(), opts.timeout, strings.Join(failures, "; ")))
}

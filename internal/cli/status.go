package cli

import (
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// statusJSON is the -o json shape of `chordkv status`.
type statusJSON struct {
	ID          string   `json:"id"`
	Addr        string   `json:"addr"`
	Predecessor string   `json:"predecessor"`
	Successors  []string `json:"successors"`
	Fingers     []string `json:"fingers"`
	Member      bool     `json:"member"`
	Ready       bool     `json:"ready"`
	// What the node stores, all replica roles together.
	StoredKeys       uint64 `json:"stored_keys"`
	StoredTombstones uint64 `json:"stored_tombstones"`
	StoredBytes      uint64 `json:"stored_bytes"`
}

func newStatusJSON(s *pb.StatusResponse) statusJSON {
	return statusJSON{
		ID:          s.GetId(),
		Addr:        s.GetAddr(),
		Predecessor: s.GetPredecessor(),
		Successors:  nonNil(s.GetSuccessors()),
		Fingers:     nonNil(s.GetFingers()),
		Member:      s.GetMember(),
		Ready:       s.GetReady(),

		StoredKeys:       s.GetStoredKeys(),
		StoredTombstones: s.GetStoredTombstones(),
		StoredBytes:      s.GetStoredBytes(),
	}
}

func newStatusCmd(opts *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "Show one node's routing state",
		Example: "  chordkv status --endpoints 127.0.0.1:7001 -o json",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := withFailover(cmd.Context(), opts, getStatus)
			if err != nil {
				return err
			}
			out := newStatusJSON(st)
			if opts.output == outputJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			return writeTable(cmd.OutOrStdout(), []string{"FIELD", "VALUE"}, [][]string{
				{"id", out.ID},
				{"addr", out.Addr},
				{"predecessor", orNone(out.Predecessor)},
				{"successors", orNone(strings.Join(out.Successors, ","))},
				{"fingers", orNone(strings.Join(out.Fingers, ","))},
				{"member", strconv.FormatBool(out.Member)},
				{"ready", strconv.FormatBool(out.Ready)},
				{"stored keys", strconv.FormatUint(out.StoredKeys, 10)},
				{"stored tombstones", strconv.FormatUint(out.StoredTombstones, 10)},
				{"stored bytes", strconv.FormatUint(out.StoredBytes, 10)},
			})
		},
	}
}

package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

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
	// Synced: the node holds its key ranges (created the ring, or took
	// them over after joining).
	Synced bool `json:"synced"`
	// What the node stores, all replica roles together.
	StoredKeys       uint64 `json:"stored_keys"`
	StoredTombstones uint64 `json:"stored_tombstones"`
	StoredBytes      uint64 `json:"stored_bytes"`
	// Read leases (serve --read-lease): the one this node holds over its
	// primary range, and how many it grants other nodes.
	ReadLease     readLeaseJSON `json:"read_lease"`
	LeasesGranted uint32        `json:"leases_granted"`
}

// readLeaseJSON is a held read lease; Held is false, and the range and
// grantors empty, while the node holds none. Renewing says whether the node
// renews it (serve --read-lease-idle): not held but renewing is a lease its
// replicas have not granted (yet); held but not renewing, one running out.
type readLeaseJSON struct {
	Held        bool     `json:"held"`
	From        string   `json:"from"`
	To          string   `json:"to"`
	Grantors    []string `json:"grantors"`
	RemainingMS int64    `json:"remaining_ms"`
	Renewing    bool     `json:"renewing"`
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
		Synced:      s.GetSynced(),

		StoredKeys:       s.GetStoredKeys(),
		StoredTombstones: s.GetStoredTombstones(),
		StoredBytes:      s.GetStoredBytes(),

		ReadLease: readLeaseJSON{
			Held:        s.GetReadLease() != nil,
			From:        s.GetReadLease().GetFrom(),
			To:          s.GetReadLease().GetTo(),
			Grantors:    nonNil(s.GetReadLease().GetGrantors()),
			RemainingMS: s.GetReadLease().GetRemainingMs(),
			Renewing:    s.GetReadLeaseRenewing(),
		},
		LeasesGranted: s.GetLeasesGranted(),
	}
}

// leaseText is the read lease as `chordkv status` prints it.
func leaseText(l readLeaseJSON) string {
	switch {
	case !l.Held && l.Renewing:
		return "none; renewing, not granted yet"
	case !l.Held:
		return "none"
	}
	text := fmt.Sprintf("(%s, %s] for %s more, granted by %s", l.From, l.To,
		time.Duration(l.RemainingMS)*time.Millisecond, strings.Join(l.Grantors, ","))
	if !l.Renewing {
		text += "; idle, not renewed"
	}
	return text
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
				{"synced", strconv.FormatBool(out.Synced)},
				{"stored keys", strconv.FormatUint(out.StoredKeys, 10)},
				{"stored tombstones", strconv.FormatUint(out.StoredTombstones, 10)},
				{"stored bytes", strconv.FormatUint(out.StoredBytes, 10)},
				{"read lease", leaseText(out.ReadLease)},
				{"leases granted", strconv.FormatUint(uint64(out.LeasesGranted), 10)},
			})
		},
	}
}

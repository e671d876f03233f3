package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/chordkv/chordkv/internal/sim"
)

func newSimCmd(opts *clientOptions) *cobra.Command {
	var e sim.Experiment
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the real chord code for N nodes over the in-memory network",
		Long: "sim builds an N-node ring from the real internal/chord code over an in-memory\n" +
			"network, stabilizes it to an exact ring, optionally crashes a fraction of the\n" +
			"nodes at once and lets the survivors repair it, then routes L lookups and checks\n" +
			"every owner against a sorted oracle. The same seed always prints the same result.",
		Example: "  chordkv sim --nodes 4096 --lookups 100000 --seed 1 -o json\n" +
			"  chordkv sim --nodes 1000 --lookups 10000 --seed 7 --fail 0.25",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if e.Nodes < 1 || e.Lookups < 0 || e.Fail < 0 || e.Fail >= 1 || e.Successors < 0 {
				return usageErrorf("need --nodes >= 1, --lookups >= 0, 0 <= --fail < 1 and --successors >= 0")
			}
			rep, err := sim.RunExperiment(cmd.Context(), e)
			if err != nil {
				return err
			}
			if opts.output == outputJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			f := func(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }
			return writeTable(cmd.OutOrStdout(), []string{"METRIC", "VALUE"}, [][]string{
				{"nodes", strconv.Itoa(rep.Nodes)},
				{"lookups", strconv.Itoa(rep.Lookups)},
				{"hops mean / p50 / p99 / max", fmt.Sprintf("%s / %d / %d / %d", f(rep.Hops.Mean), rep.Hops.P50, rep.Hops.P99, rep.Hops.Max)},
				{"hop bound ½·log2 N + 1", f(rep.HopBound)},
				{"failed lookups", strconv.Itoa(rep.FailedLookups)},
				{"rounds to converge", strconv.Itoa(rep.RoundsToConverge)},
				{"crashed / rounds to re-converge", fmt.Sprintf("%d / %d", rep.Crashed, rep.RoundsToReconverge)},
				{"state per node mean / max", fmt.Sprintf("%s / %d", f(rep.StatePerNode.Mean), rep.StatePerNode.Max)},
				{"messages", strconv.FormatUint(rep.Messages, 10)},
			})
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&e.Nodes, "nodes", 64, "ring size")
	fl.IntVar(&e.Lookups, "lookups", 1000, "lookups to route once the ring has converged")
	fl.Uint64Var(&e.Seed, "seed", 1, "seed for every random choice")
	fl.Float64Var(&e.Fail, "fail", 0, "fraction of nodes to crash at once before the lookups")
	fl.IntVar(&e.Successors, "successors", 0, "successor-list length r (0: the default, 8)")
	return cmd
}

package cli

import (
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is set at build time (make build: -X ...cli.Version=$(git describe)).
// Builds without it report the module version, or "dev".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

type versionJSON struct {
	Version string `json:"version"`
	Go      string `json:"go"`
}

func newVersionCmd(opts *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print chordkv's version",
		Example: "  chordkv version\n  chordkv version -o json",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionJSON{Version: version(), Go: runtime.Version()}
			if opts.output == outputJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			cmd.Printf("chordkv %s (%s)\n", v.Version, v.Go)
			return nil
		},
	}
}

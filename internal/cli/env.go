package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envPrefix starts the environment variable of every flag: --data-dir is
// CHORDKV_DATA_DIR.
const envPrefix = "CHORDKV_"

// envName is the environment variable for a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// bindEnv fills every flag of cmd that was not given on the command line
// from its CHORDKV_* variable, so explicit flags win. It walks cmd.Flags(),
// which by now holds the inherited persistent flags too.
func bindEnv(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		v, ok := lookup(envName(f.Name))
		if !ok {
			return
		}
		if err := cmd.Flags().Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return withExitCode(ExitUsage, err)
	}
	return nil
}

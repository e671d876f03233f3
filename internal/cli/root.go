package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/credentials"

	"github.com/chordkv/chordkv/internal/transport"
)

// clientOptions are the persistent flags every client command shares.
type clientOptions struct {
	endpoints []string
	timeout   time.Duration
	output    string
	// tls holds --tls-cert, --tls-key and --tls-ca; serve reads them too.
	tls transport.TLSFiles
	// creds are built from tls by validate, once per run.
	creds credentials.TransportCredentials
}

const (
	outputText = "text"
	outputJSON = "json"
)

// subcommands lists every command under chordkv. Adding a command is one
// line here.
func subcommands(opts *clientOptions) []*cobra.Command {
	return []*cobra.Command{
		newServeCmd(opts),
		newPutCmd(opts),
		newGetCmd(opts),
		newDelCmd(opts),
		newRingCmd(opts),
		newLookupCmd(opts),
		newStatusCmd(opts),
		newHealthCmd(opts),
		newSimCmd(opts),
		newBenchCmd(opts),
		newVersionCmd(opts),
	}
}

// Execute runs chordkv with the process's arguments and environment and
// returns the exit code.
func Execute() int {
	return run(context.Background(), os.Args[1:], os.LookupEnv, os.Stdin, os.Stdout, os.Stderr)
}

// run is Execute with its inputs made explicit, for tests.
func run(ctx context.Context, args []string, env func(string) (string, bool), stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(env)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	initCompletion(root)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "chordkv: %v\n", err)
	}
	return exitCode(err)
}

func newRootCmd(env func(string) (string, bool)) *cobra.Command {
	opts := &clientOptions{}
	root := &cobra.Command{
		Use:   "chordkv",
		Short: "A key-value store on a Chord ring",
		Long: "chordkv runs nodes of a Chord DHT (chordkv serve) and talks to a running ring.\n" +
			"Every flag can also be set from the environment as CHORDKV_<FLAG>, e.g.\n" +
			"CHORDKV_ENDPOINTS or CHORDKV_DATA_DIR; a flag on the command line wins.",
		Example: "  chordkv serve --addr 127.0.0.1:7000 --data-dir /tmp/n1 --metrics-addr 127.0.0.1:9100\n" +
			"  chordkv put greeting hello && chordkv get greeting\n" +
			"  source <(chordkv completion bash)",
		SilenceErrors: true,
		SilenceUsage:  true,
		// Without Args and RunE, cobra would print help and exit 0 for an
		// unknown command; scripts need exit 2.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q; run 'chordkv --help'", args[0])
			}
			return cmd.Help()
		},
		// A subcommand that defines its own PersistentPreRunE replaces this
		// one and must call bindEnv itself.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd, env); err != nil {
				return err
			}
			return opts.validate()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withExitCode(ExitUsage, err) })
	pf := root.PersistentFlags()
	pf.StringSliceVar(&opts.endpoints, "endpoints", []string{"127.0.0.1:7000"}, "comma-separated node addresses to ask, in order of preference")
	pf.DurationVar(&opts.timeout, "timeout", 3*time.Second, "how long to wait for each endpoint")
	pf.StringVarP(&opts.output, "output", "o", outputText, "output format: text or json")
	pf.StringVar(&opts.tls.Cert, "tls-cert", "", "PEM certificate to present (a client certificate; on serve, the node's); needs --tls-key")
	pf.StringVar(&opts.tls.Key, "tls-key", "", "PEM private key of --tls-cert")
	pf.StringVar(&opts.tls.CA, "tls-ca", "", "PEM CA bundle to verify the other side with; on serve it also requires client certificates (mutual TLS)")
	root.AddCommand(subcommands(opts)...)
	return root
}

// completionExamples show how to load each shell's completion script.
var completionExamples = map[string]string{
	"bash": "  source <(chordkv completion bash)\n" +
		"  chordkv completion bash > /etc/bash_completion.d/chordkv",
	"zsh": "  chordkv completion zsh > \"${fpath[1]}/_chordkv\"",
	"fish": "  chordkv completion fish | source\n" +
		"  chordkv completion fish > ~/.config/fish/completions/chordkv.fish",
	"powershell": "  chordkv completion powershell | Out-String | Invoke-Expression",
}

// initCompletion adds cobra's built-in "completion" command now rather than
// when it runs, so that it can be given examples like every other command.
// Cobra fixes the command's output writer when it creates it: call this
// after SetOut.
func initCompletion(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Example = "  source <(chordkv completion bash)\n" +
			"  chordkv completion zsh > \"${fpath[1]}/_chordkv\"\n" +
			"  chordkv completion fish | source"
		for _, sh := range c.Commands() {
			sh.Example = completionExamples[sh.Name()]
		}
	}
}

func (o *clientOptions) validate() error {
	if o.output != outputText && o.output != outputJSON {
		return usageErrorf("--output must be text or json, not %q", o.output)
	}
	if o.timeout <= 0 {
		return usageErrorf("--timeout must be positive")
	}
	creds, err := o.tls.ClientCredentials()
	if err != nil {
		return usageErrorf("%w", err)
	}
	o.creds = creds
	return nil
}

// exactArgs is cobra.ExactArgs reporting a usage error.
func exactArgs(n int) cobra.PositionalArgs { return usageArgs(cobra.ExactArgs(n)) }

// usageArgs is check reporting its refusal as a usage error (exit 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		return withExitCode(ExitUsage, check(cmd, args))
	}
}

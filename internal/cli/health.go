package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthJSON is one endpoint in the -o json output of `chordkv health`.
type healthJSON struct {
	Endpoint string `json:"endpoint"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
}

// newHealthCmd asks nodes the standard gRPC health service
// (grpc.health.v1.Health/Check), the same question grpc_health_probe asks.
// It exists so that a container image with nothing but the chordkv binary
// (deploy/Dockerfile is FROM scratch) can still have a HEALTHCHECK.
//
// Unlike the other client commands it asks every endpoint rather than the
// first that answers: "are all these nodes serving?" is what a health
// check, or a script waiting for a cluster, needs.
func newHealthCmd(opts *clientOptions) *cobra.Command {
	var service string
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Exit 0 only if every endpoint reports SERVING on the gRPC health service",
		Long: "Ask each --endpoints node the standard gRPC health service. A node is SERVING once it\n" +
			"holds a full successor list and has taken over its key range. Exit codes: 0 every\n" +
			"endpoint is SERVING; 1 some endpoint answered but is not SERVING; 4 some endpoint did\n" +
			"not answer within --timeout.",
		Example: "  chordkv health --endpoints 127.0.0.1:7000 --timeout 2s\n" +
			"  chordkv health --endpoints 127.0.0.1:7001,127.0.0.1:7002 -o json",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(opts.endpoints) == 0 {
				return usageErrorf("no endpoints given (--endpoints or CHORDKV_ENDPOINTS)")
			}
			out := make([]healthJSON, 0, len(opts.endpoints))
			var unreachable, notServing []string
			for _, addr := range opts.endpoints {
				res, err := dialAndCall(cmd.Context(), opts, addr, healthpb.NewHealthClient,
					func(ctx context.Context, c healthpb.HealthClient) (*healthpb.HealthCheckResponse, error) {
						return c.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
					})
				h := healthJSON{Endpoint: addr}
				switch {
				case err != nil && exitCode(err) == ExitUsage:
					return err
				case err != nil && isUnreachable(err):
					h.Status, h.Error = "UNREACHABLE", err.Error()
					unreachable = append(unreachable, err.Error())
				case err != nil:
					// An answer that is not a status, e.g. NotFound for an
					// unknown --service: the node is up but not healthy.
					h.Status, h.Error = "ERROR", err.Error()
					notServing = append(notServing, err.Error())
				default:
					h.Status = res.GetStatus().String()
					if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
						notServing = append(notServing, addr+": "+h.Status)
					}
				}
				out = append(out, h)
			}
			if err := printHealth(cmd, opts, out); err != nil {
				return err
			}
			switch {
			case len(unreachable) > 0:
				return withExitCode(ExitUnavailable, fmt.Errorf("not every endpoint answered within %v: %s",
					opts.timeout, strings.Join(append(unreachable, notServing...), "; ")))
			case len(notServing) > 0:
				return withExitCode(ExitFailure, errors.New("not serving: "+strings.Join(notServing, "; ")))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&service, "service", "", `gRPC service to ask about; "" is the whole node`)
	return cmd
}

func printHealth(cmd *cobra.Command, opts *clientOptions, out []healthJSON) error {
	if opts.output == outputJSON {
		return writeJSON(cmd.OutOrStdout(), out)
	}
	rows := make([][]string, len(out))
	for i, h := range out {
		rows[i] = []string{h.Endpoint, h.Status}
	}
	return writeTable(cmd.OutOrStdout(), []string{"ENDPOINT", "STATUS"}, rows)
}

package cli

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/server"
)

type serveOptions struct {
	cfg       server.Config
	logFormat string
	logLevel  string
}

func newServeCmd() *cobra.Command {
	o := &serveOptions{}
	d := chord.LoopbackConfig("")
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a chordkv node",
		Long: "Run a chordkv node: join the ring through --join (or the peers remembered in\n" +
			"--data-dir), or create a new ring. SIGINT or SIGTERM makes it leave the ring and stop.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), o.logFormat, o.logLevel)
			if err != nil {
				return err
			}
			if o.cfg.DataDir == "" {
				return usageErrorf("--data-dir is required")
			}
			o.cfg.Logger = logger
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err = server.Run(ctx, o.cfg)
			if errors.Is(err, server.ErrInvalidConfig) {
				return withExitCode(ExitUsage, err)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cfg.Addr, "addr", "127.0.0.1:7000", "host:port to listen on")
	f.StringVar(&o.cfg.Advertise, "advertise", "", "host:port peers dial; the node's ID is its hash (default --addr)")
	f.StringSliceVar(&o.cfg.Join, "join", nil, "comma-separated members to join through; the first may bootstrap the ring")
	f.StringVar(&o.cfg.DataDir, "data-dir", "", "directory for the node's data (required)")
	f.IntVar(&o.cfg.Successors, "successors", d.Successors, "successor-list length r")
	f.DurationVar(&o.cfg.StabilizeInterval, "stabilize-interval", d.StabilizeInterval, "how often to stabilize")
	f.DurationVar(&o.cfg.CallTimeout, "call-timeout", d.CallTimeout, "deadline of every call to a peer")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, usageErrorf("--log-format %q: want text or json", format)
}

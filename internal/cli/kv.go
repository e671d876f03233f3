package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chordkv/chordkv/internal/transport"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// kvVersionJSON is how -o json shows a write's version: the hybrid logical
// clock timestamp and the 40-hex-digit ID of the node that coordinated it.
type kvVersionJSON struct {
	HLC  uint64 `json:"hlc"`
	Node string `json:"node"`
}

// getJSON is the -o json shape of `chordkv get`. Value is base64, as
// encoding/json writes []byte, so binary values survive.
type getJSON struct {
	Key     string        `json:"key"`
	Value   []byte        `json:"value"`
	Version kvVersionJSON `json:"version"`
}

// writeResultJSON is the -o json shape of `chordkv put` and `chordkv del`.
type writeResultJSON struct {
	Key     string        `json:"key"`
	Version kvVersionJSON `json:"version"`
}

func decodeVersionJSON(m *pb.Version) (kvVersionJSON, error) {
	v, err := transport.DecodeVersion(m)
	if err != nil {
		return kvVersionJSON{}, fmt.Errorf("node answered with a bad version: %w", err)
	}
	return kvVersionJSON{HLC: v.HLC, Node: v.Node.String()}, nil
}

// kvFlags are the flags the key commands share beyond the client flags.
type kvFlags struct {
	consistency string
}

func (f *kvFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.consistency, "consistency", "quorum", "replicas that must answer: one, quorum or all")
}

func (f *kvFlags) parse() (pb.Consistency, error) {
	switch f.consistency {
	case "one":
		return pb.Consistency_CONSISTENCY_ONE, nil
	case "quorum":
		return pb.Consistency_CONSISTENCY_QUORUM, nil
	case "all":
		return pb.Consistency_CONSISTENCY_ALL, nil
	}
	return 0, usageErrorf("--consistency must be one, quorum or all, not %q", f.consistency)
}

// prepare checks what every key command checks before any call: a key no
// node would accept, and the consistency flag.
func (f *kvFlags) prepare(key string) (pb.Consistency, error) {
	if key == "" {
		return 0, usageErrorf("key is empty; keys are 1 or more bytes")
	}
	return f.parse()
}

// kvCall runs a KV call with failover and turns a node's answer into the
// error scripts expect: "not found: KEY" (exit 3), the node's own message
// for a refused request (exit 2, it names the limit).
func kvCall[T any](ctx context.Context, opts *clientOptions, key string, call func(context.Context, pb.KVClient) (T, error)) (T, error) {
	res, err := failover(ctx, opts, pb.NewKVClient, call)
	var ne *nodeError
	if !errors.As(err, &ne) {
		return res, err // success, unavailable everywhere, or a usage error
	}
	switch s, _ := status.FromError(ne.err); s.Code() {
	case codes.NotFound:
		err = withExitCode(ExitNotFound, fmt.Errorf("not found: %s", key))
	case codes.InvalidArgument:
		err = withExitCode(ExitUsage, errors.New(s.Message()))
	case codes.ResourceExhausted:
		// gRPC's own message-size refusal: the request is over anything the
		// node could accept, let alone its --max-value-bytes.
		err = withExitCode(ExitUsage, fmt.Errorf("request too large for the node (see its --max-value-bytes): %w", err))
	}
	return res, err
}

func newPutCmd(opts *clientOptions) *cobra.Command {
	var f kvFlags
	var batch batchFlags
	cmd := &cobra.Command{
		Use:   "put KEY [VALUE] | put --batch",
		Short: "Store VALUE (or standard input) under KEY",
		Long: "Store VALUE under KEY. Without VALUE the value is read from standard input,\n" +
			"byte for byte, so any binary value can be stored. The command returns once the\n" +
			"--consistency level's replicas have stored it durably.\n\n" +
			"With --batch, standard input is lines of `KEY VALUE`: the key is everything before\n" +
			"the first space, the value the rest of the line (without the newline); empty lines\n" +
			"are skipped. Every line is checked before anything is written; a line without a\n" +
			"space is a usage error (exit 2). The pairs go out in MultiPut calls of up to 500,\n" +
			"straight to each key's owner when the input fills more than one call (--routing).\n" +
			"It prints one summary line, and exits 0 only when every pair was written, 1 when\n" +
			"some were not, 4 when no endpoint answered.",
		Example: "  chordkv put greeting hello\n" +
			"  chordkv put photo < photo.jpg --consistency all\n" +
			"  chordkv put greeting hello -o json   # {\"key\":\"greeting\",\"version\":{...}}\n" +
			"  printf 'a 1\\nb two words\\n' | chordkv put --batch -o json   # {\"written\":2,\"failed\":0,\"errors\":[]}",
		Args: batchArgs(&batch, "put --batch takes no KEY or VALUE argument: the pairs come from standard input",
			usageArgs(cobra.RangeArgs(1, 2))),
		RunE: func(cmd *cobra.Command, args []string) error {
			if batch.on {
				return runPutBatch(cmd, opts, &f, &batch)
			}
			key := args[0]
			cons, err := f.prepare(key)
			if err != nil {
				return err
			}
			var value []byte
			if len(args) == 2 {
				value = []byte(args[1])
			} else if value, err = readValue(cmd.InOrStdin()); err != nil {
				return err
			}
			res, err := kvCall(cmd.Context(), opts, key, func(ctx context.Context, c pb.KVClient) (*pb.PutResponse, error) {
				return c.Put(ctx, &pb.PutRequest{Key: []byte(key), Value: value, Consistency: cons})
			})
			if err != nil {
				return err
			}
			return printWrite(cmd, opts, key, res.GetVersion())
		},
	}
	f.register(cmd)
	batch.register(cmd, "read `KEY VALUE` lines from standard input and write them with MultiPut")
	return cmd
}

// readValue reads a value from standard input, refusing one no node could
// accept rather than exhausting memory.
func readValue(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxClientMessageBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read value from standard input: %w", err)
	}
	if len(b) > maxClientMessageBytes {
		return nil, usageErrorf("value on standard input is over %d bytes, more than the client sends", maxClientMessageBytes)
	}
	return b, nil
}

func newGetCmd(opts *clientOptions) *cobra.Command {
	var f kvFlags
	var batch batchFlags
	cmd := &cobra.Command{
		Use:   "get KEY | get --batch",
		Short: "Print the value stored under KEY",
		Long: "Print the value stored under KEY: the raw bytes, with no newline added, so\n" +
			"binary values can be redirected to a file. A missing or deleted key exits 3.\n\n" +
			"With --batch, standard input is one key per line (empty lines are skipped), read\n" +
			"in MultiGet calls of up to 500 (to each key's owner, as put --batch sends them).\n" +
			"Each found key prints one `KEY VALUE` line, in input order, the format put --batch\n" +
			"reads; a missing key prints nothing. A value with a newline cannot be printed so:\n" +
			"that key fails (-o json shows it, base64).\n" +
			"The counts go to standard error. It exits 0 when every key was found, 3 when some\n" +
			"were missing and none failed, 1 when some failed, 4 when no endpoint answered.",
		Example: "  chordkv get greeting\n" +
			"  chordkv get photo > photo.jpg\n" +
			"  chordkv get greeting -o json   # {\"key\":\"greeting\",\"value\":\"aGVsbG8=\",\"version\":{...}}\n" +
			"  chordkv get --batch < keys.txt | chordkv put --batch --endpoints other:7000",
		Args: batchArgs(&batch, "get --batch takes no KEY argument: the keys come from standard input", exactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if batch.on {
				return runGetBatch(cmd, opts, &f, &batch)
			}
			key := args[0]
			cons, err := f.prepare(key)
			if err != nil {
				return err
			}
			res, err := kvCall(cmd.Context(), opts, key, func(ctx context.Context, c pb.KVClient) (*pb.GetResponse, error) {
				return c.Get(ctx, &pb.GetRequest{Key: []byte(key), Consistency: cons})
			})
			if err != nil {
				return err
			}
			if opts.output == outputJSON {
				v, err := decodeVersionJSON(res.GetVersion())
				if err != nil {
					return err
				}
				return writeJSON(cmd.OutOrStdout(), getJSON{Key: key, Value: nonNilBytes(res.GetValue()), Version: v})
			}
			if _, err := cmd.OutOrStdout().Write(res.GetValue()); err != nil {
				return fmt.Errorf("write value: %w", err)
			}
			return nil
		},
	}
	f.register(cmd)
	batch.register(cmd, "read keys, one per line, from standard input and read them with MultiGet")
	return cmd
}

func newDelCmd(opts *clientOptions) *cobra.Command {
	var f kvFlags
	var batch batchFlags
	cmd := &cobra.Command{
		Use:   "del KEY | del --batch",
		Short: "Delete KEY",
		Long: "Delete KEY. Deleting a key that does not exist succeeds: the delete is\n" +
			"recorded (a tombstone) and orders after every earlier write of the key.\n\n" +
			"With --batch, standard input is one key per line (empty lines are skipped),\n" +
			"deleted in MultiDelete calls of up to 500 (to each key's owner, as put --batch\n" +
			"sends them). It prints one summary line, and exits\n" +
			"0 only when every key was deleted, 1 when some were not, 4 when no endpoint\n" +
			"answered.",
		Example: "  chordkv del greeting\n" +
			"  chordkv del greeting -o json   # {\"key\":\"greeting\",\"version\":{...}}\n" +
			"  printf 'a\\nb\\n' | chordkv del --batch -o json   # {\"deleted\":2,\"failed\":0,\"errors\":[]}",
		Args: batchArgs(&batch, "del --batch takes no KEY argument: the keys come from standard input", exactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if batch.on {
				return runDelBatch(cmd, opts, &f, &batch)
			}
			key := args[0]
			cons, err := f.prepare(key)
			if err != nil {
				return err
			}
			res, err := kvCall(cmd.Context(), opts, key, func(ctx context.Context, c pb.KVClient) (*pb.DeleteResponse, error) {
				return c.Delete(ctx, &pb.DeleteRequest{Key: []byte(key), Consistency: cons})
			})
			if err != nil {
				return err
			}
			return printWrite(cmd, opts, key, res.GetVersion())
		},
	}
	f.register(cmd)
	batch.register(cmd, "read keys, one per line, from standard input and delete them with MultiDelete")
	return cmd
}

// printWrite reports an acknowledged put or delete: "OK" as text, the key
// and version as JSON.
func printWrite(cmd *cobra.Command, opts *clientOptions, key string, version *pb.Version) error {
	v, err := decodeVersionJSON(version)
	if err != nil {
		return err
	}
	if opts.output == outputJSON {
		return writeJSON(cmd.OutOrStdout(), writeResultJSON{Key: key, Version: v})
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), "OK")
	return err
}

// nonNilBytes makes an empty value print as "" rather than null in JSON.
func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

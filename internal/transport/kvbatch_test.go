package transport

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/chordkv/chordkv/internal/kv"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

func TestMultiPutMultiGetRoundTrip(t *testing.T) {
	cfg := kv.DefaultConfig()
	cfg.MaxKeyBytes = 16
	n := startKVNode(t, cfg)
	c := dialKV(t, n.addr)
	ctx := ctxTimeout(t, 10*time.Second)

	// An empty key and a long key in the middle fail on their own; the
	// items around them are written.
	items := []*pb.KeyValue{
		{Key: []byte("a"), Value: []byte("1")},
		{Key: nil, Value: []byte("no key")},
		{Key: []byte("b"), Value: []byte{0, 0xff}},
		{Key: bytes.Repeat([]byte("k"), 17), Value: []byte("long key")},
		{Key: []byte("c"), Value: nil},
	}
	put, err := c.MultiPut(ctx, &pb.MultiPutRequest{Items: items, Consistency: pb.Consistency_CONSISTENCY_ALL})
	if err != nil {
		t.Fatalf("MultiPut: %v", err)
	}
	if len(put.GetResults()) != len(items) {
		t.Fatalf("%d results for %d items", len(put.GetResults()), len(items))
	}
	wantPutErr := []string{"", "key is empty", "", "--max-key-bytes", ""}
	for i, r := range put.GetResults() {
		if !bytes.Equal(r.GetKey(), items[i].GetKey()) {
			t.Errorf("result %d is for key %q, want %q", i, r.GetKey(), items[i].GetKey())
		}
		switch want := wantPutErr[i]; {
		case want == "" && (r.GetError() != "" || r.GetVersion().GetHlc() == 0):
			t.Errorf("item %d: error %q, version %v; want written", i, r.GetError(), r.GetVersion())
		case want != "" && (!strings.Contains(r.GetError(), want) || r.GetVersion() != nil):
			t.Errorf("item %d: error %q, version %v; want an error with %q", i, r.GetError(), r.GetVersion(), want)
		}
	}

	keys := [][]byte{[]byte("c"), []byte("missing"), nil, []byte("a"), []byte("b")}
	got, err := c.MultiGet(ctx, &pb.MultiGetRequest{Keys: keys, Consistency: pb.Consistency_CONSISTENCY_QUORUM})
	if err != nil {
		t.Fatalf("MultiGet: %v", err)
	}
	tests := []struct {
		found   bool
		value   []byte
		version *pb.Version
		err     string
	}{
		{true, nil, put.GetResults()[4].GetVersion(), ""},
		{false, nil, nil, ""}, // not found is an answer, not an error
		{false, nil, nil, "key is empty"},
		{true, []byte("1"), put.GetResults()[0].GetVersion(), ""},
		{true, []byte{0, 0xff}, put.GetResults()[2].GetVersion(), ""},
	}
	if len(got.GetResults()) != len(keys) {
		t.Fatalf("%d results for %d keys", len(got.GetResults()), len(keys))
	}
	for i, tt := range tests {
		r := got.GetResults()[i]
		if !bytes.Equal(r.GetKey(), keys[i]) || r.GetFound() != tt.found || !bytes.Equal(r.GetValue(), tt.value) ||
			!proto.Equal(r.GetVersion(), tt.version) || !strings.Contains(r.GetError(), tt.err) || (tt.err == "") != (r.GetError() == "") {
			t.Errorf("result %d = %v; want key %q found %v value %q version %v error %q", i, r, keys[i], tt.found, tt.value, tt.version, tt.err)
		}
	}

	// MultiDelete: deleted keys read as not found, a missing key deletes
	// fine, an empty key fails on its own.
	delKeys := [][]byte{[]byte("a"), nil, []byte("never-written"), []byte("c")}
	del, err := c.MultiDelete(ctx, &pb.MultiDeleteRequest{Keys: delKeys, Consistency: pb.Consistency_CONSISTENCY_ALL})
	if err != nil || len(del.GetResults()) != len(delKeys) {
		t.Fatalf("MultiDelete: %v, %d results", err, len(del.GetResults()))
	}
	for i, r := range del.GetResults() {
		wantErr := delKeys[i] == nil
		if !bytes.Equal(r.GetKey(), delKeys[i]) || wantErr != (r.GetError() != "") || wantErr != (r.GetVersion() == nil) {
			t.Errorf("delete result %d = %v", i, r)
		}
	}
	after, err := c.MultiGet(ctx, &pb.MultiGetRequest{Keys: [][]byte{[]byte("a"), []byte("b"), []byte("c")}})
	if err != nil {
		t.Fatal(err)
	}
	for i, wantFound := range []bool{false, true, false} {
		if r := after.GetResults()[i]; r.GetFound() != wantFound || r.GetError() != "" {
			t.Errorf("after delete, result %d = %v; want found %v", i, r, wantFound)
		}
	}
}

func TestBatchRequestLimits(t *testing.T) {
	n := startKVNode(t, kv.DefaultConfig())
	c := dialKV(t, n.addr)
	ctx := ctxTimeout(t, 10*time.Second)

	manyKeys := make([][]byte, MaxBatchItems+1)
	manyItems := make([]*pb.KeyValue, MaxBatchItems+1)
	for i := range manyKeys {
		manyKeys[i] = fmt.Appendf(nil, "k%d", i)
		manyItems[i] = &pb.KeyValue{Key: manyKeys[i]}
	}
	bigKeys := make([][]byte, 3) // valid keys each, too many bytes together
	for i := range bigKeys {
		bigKeys[i] = bytes.Repeat([]byte{byte('a' + i)}, MaxBatchKeyBytes/2)
	}
	tests := []struct {
		name    string
		call    func() error
		code    codes.Code
		message string
	}{
		{"get: too many keys", func() error {
			_, err := c.MultiGet(ctx, &pb.MultiGetRequest{Keys: manyKeys})
			return err
		}, codes.InvalidArgument, "the limit is 1000"},
		{"put: too many items", func() error {
			_, err := c.MultiPut(ctx, &pb.MultiPutRequest{Items: manyItems})
			return err
		}, codes.InvalidArgument, "the limit is 1000"},
		{"delete: too many keys", func() error {
			_, err := c.MultiDelete(ctx, &pb.MultiDeleteRequest{Keys: manyKeys})
			return err
		}, codes.InvalidArgument, "the limit is 1000"},
		{"get: too many key bytes", func() error {
			_, err := c.MultiGet(ctx, &pb.MultiGetRequest{Keys: bigKeys})
			return err
		}, codes.InvalidArgument, "bytes, the limit is"},
		{"put: unknown consistency", func() error {
			_, err := c.MultiPut(ctx, &pb.MultiPutRequest{Items: manyItems[:1], Consistency: 42})
			return err
		}, codes.InvalidArgument, "consistency"},
		{"get: exactly the cap", func() error {
			res, err := c.MultiGet(ctx, &pb.MultiGetRequest{Keys: manyKeys[:MaxBatchItems]})
			if err == nil && len(res.GetResults()) != MaxBatchItems {
				return fmt.Errorf("%d results", len(res.GetResults()))
			}
			return err
		}, codes.OK, ""},
		{"get: empty batch", func() error {
			res, err := c.MultiGet(ctx, &pb.MultiGetRequest{})
			if err == nil && len(res.GetResults()) != 0 {
				return fmt.Errorf("%d results", len(res.GetResults()))
			}
			return err
		}, codes.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := status.Convert(tt.call())
			if s.Code() != tt.code || !strings.Contains(s.Message(), tt.message) {
				t.Errorf("got %v %q, want %v containing %q", s.Code(), s.Message(), tt.code, tt.message)
			}
		})
	}
}

func TestMultiGetResponseBudget(t *testing.T) {
	cfg := kv.DefaultConfig()
	cfg.MaxValueBytes = 2 << 20
	n := startKVNode(t, cfg)
	c := dialKV(t, n.addr)
	ctx := ctxTimeout(t, 10*time.Second)

	// Three values of 1.5 MiB: the first always fits, the second would
	// pass the budget, the small third still fits.
	big := bytes.Repeat([]byte("v"), 3<<19)
	for _, kv := range []*pb.KeyValue{{Key: []byte("x"), Value: big}, {Key: []byte("y"), Value: big}, {Key: []byte("z"), Value: []byte("small")}} {
		if _, err := c.Put(ctx, &pb.PutRequest{Key: kv.Key, Value: kv.Value}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.MultiGet(ctx, &pb.MultiGetRequest{Keys: [][]byte{[]byte("x"), []byte("y"), []byte("z")}})
	if err != nil {
		t.Fatal(err)
	}
	r := res.GetResults()
	if !r[0].GetFound() || r[1].GetFound() || !strings.Contains(r[1].GetError(), "response size limit") || string(r[2].GetValue()) != "small" {
		t.Errorf("results: x found %v, y found %v error %q, z %q", r[0].GetFound(), r[1].GetFound(), r[1].GetError(), r[2].GetValue())
	}
	if r[0].GetResponseFull() || !r[1].GetResponseFull() || r[2].GetResponseFull() {
		t.Errorf("response_full = %v %v %v, want false true false", r[0].GetResponseFull(), r[1].GetResponseFull(), r[2].GetResponseFull())
	}
}

// A forwarding node learns from the owner's flag, not its error text, that
// a key was left out, and its own answer carries the flag on (MultiGet sets
// it for any item error wrapping ErrResponseFull).
func TestForwardedResponseFullKeepsItsType(t *testing.T) {
	items := []kv.Item{{Key: []byte("a")}, {Key: []byte("b")}, {Key: []byte("c")}}
	got := []*pb.GetResult{
		{Key: []byte("a"), Error: ErrResponseFull.Error(), ResponseFull: true},
		{Key: []byte("b"), Error: "some other failure"},
		{Key: []byte("c"), Error: "reworded by a newer owner", ResponseFull: true},
	}
	out := make([]kv.Result, len(items))
	if err := decodeBatchResults("owner:1", items, got, out, getFailure, func(*pb.GetResult, *kv.Result) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, true} {
		if full := errors.Is(out[i].Err, ErrResponseFull); full != want {
			t.Errorf("item %d: error %v wraps ErrResponseFull = %v, want %v", i, out[i].Err, full, want)
		}
		if !strings.HasPrefix(out[i].Err.Error(), "owner:1: ") {
			t.Errorf("item %d: error %q does not name the owner", i, out[i].Err)
		}
	}
}

package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
	"github.com/chordkv/chordkv/internal/testnet"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// kvNode is one in-process node with the real chord, kv and store layers,
// serving every service on a loopback port, as the daemon wires them.
type kvNode struct {
	addr   string
	chord  *chord.Node
	kv     *kv.Node
	store  *store.Store
	client *Client
}

const testMaxMessage = 8 << 20

func startKVNode(t *testing.T, cfg kv.Config) *kvNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	st, err := store.Open(store.Options{InMemory: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	client := NewClient(WithMaxMessageBytes(testMaxMessage))
	cn := chord.NewNode(chord.LoopbackConfig(addr), client)
	cn.Create()
	kn := kv.New(cfg, cn, st, client, store.NewClock(time.Now))
	kn.MarkSynced()
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(testMaxMessage), grpc.MaxSendMsgSize(testMaxMessage))
	NewServer(cn).Register(gs)
	NewKVServer(kn, st, cn).Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		client.Close()
		st.Close()
	})
	return &kvNode{addr: addr, chord: cn, kv: kn, store: st, client: client}
}

func dialKV(t *testing.T, addr string) pb.KVClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), MessageSizeOptions(testMaxMessage))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewKVClient(cc)
}

func TestKVRoundTripOverTheRealLayers(t *testing.T) {
	cfg := kv.DefaultConfig()
	cfg.MaxKeyBytes, cfg.MaxValueBytes = 16, 2<<20
	n := startKVNode(t, cfg)
	c := dialKV(t, n.addr)
	ctx := ctxTimeout(t, 10*time.Second)

	big := bytes.Repeat([]byte{0, 1, 2, 0xff}, (1<<20)/4) // 1 MiB, binary
	put, err := c.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: big})
	if err != nil {
		t.Fatalf("put 1 MiB: %v", err)
	}
	if v, err := DecodeVersion(put.GetVersion()); err != nil || v.Node != n.chord.Self().ID || v.HLC == 0 {
		t.Errorf("put version %v, %v", v, err)
	}
	got, err := c.Get(ctx, &pb.GetRequest{Key: []byte("k"), Consistency: pb.Consistency_CONSISTENCY_ALL})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !bytes.Equal(got.GetValue(), big) || !proto.Equal(got.GetVersion(), put.GetVersion()) {
		t.Errorf("get returned %d bytes, version %v; want %d bytes, version %v", len(got.GetValue()), got.GetVersion(), len(big), put.GetVersion())
	}
	del, err := c.Delete(ctx, &pb.DeleteRequest{Key: []byte("k")})
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if v, _ := DecodeVersion(del.GetVersion()); v.HLC <= put.GetVersion().GetHlc() {
		t.Errorf("delete version %v is not after the put's", v)
	}
	_, err = c.Get(ctx, &pb.GetRequest{Key: []byte("k")})
	if s := status.Convert(err); s.Code() != codes.NotFound || s.Message() != "key not found" {
		t.Errorf("get after delete: %v, want NotFound \"key not found\"", err)
	}

	tests := []struct {
		name    string
		call    func() error
		code    codes.Code
		message string
	}{
		{"empty key", func() error { _, err := c.Get(ctx, &pb.GetRequest{}); return err }, codes.InvalidArgument, "key is empty"},
		{"long key", func() error {
			_, err := c.Put(ctx, &pb.PutRequest{Key: make([]byte, 17)})
			return err
		}, codes.InvalidArgument, "--max-key-bytes"},
		{"big value", func() error {
			_, err := c.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: make([]byte, 2<<20+1)})
			return err
		}, codes.InvalidArgument, "--max-value-bytes"},
		{"unknown consistency", func() error {
			_, err := c.Delete(ctx, &pb.DeleteRequest{Key: []byte("k"), Consistency: 42})
			return err
		}, codes.InvalidArgument, "consistency"},
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

func testEntries(n int) []store.Entry {
	node := ring.HashAddr("writer:1")
	out := make([]store.Entry, n)
	for i := range out {
		out[i] = store.Entry{
			Key:     fmt.Appendf(nil, "key-%05d", i),
			Value:   fmt.Appendf(nil, "value-%d", i),
			Version: store.Version{HLC: store.HLCAt(time.Now()) + uint64(i), Node: node},
		}
		if i%7 == 0 {
			out[i].Value, out[i].Tombstone = nil, true
		}
	}
	return out
}

func allBuckets() []int {
	b := make([]int, store.NumBuckets)
	for i := range b {
		b[i] = i
	}
	return b
}

func TestReplicaRoundTrip(t *testing.T) {
	n := startKVNode(t, kv.DefaultConfig())
	to := n.chord.Self()
	c := NewClient(WithMaxMessageBytes(testMaxMessage))
	defer c.Close()
	ctx := ctxTimeout(t, 10*time.Second)

	entries := testEntries(1500)
	applied, err := c.Apply(ctx, to, entries)
	if err != nil || applied != len(entries) {
		t.Fatalf("apply: %d, %v; want %d", applied, err, len(entries))
	}
	if again, err := c.Apply(ctx, to, entries); err != nil || again != 0 {
		t.Errorf("applying again: %d, %v; want 0 (last writer wins)", again, err)
	}

	keys := [][]byte{entries[0].Key, entries[1].Key, []byte("absent"), entries[1499].Key}
	reads, err := c.Read(ctx, to, keys)
	if err != nil || len(reads) != len(keys) {
		t.Fatalf("read %d keys: %d results, %v", len(keys), len(reads), err)
	}
	for j, i := range []int{0, 1, -1, 1499} {
		switch {
		case i < 0 && reads[j].Found:
			t.Errorf("read absent: found %+v", reads[j].Entry)
		case i >= 0 && (!reads[j].Found || !entriesEqual(reads[j].Entry, entries[i])):
			t.Errorf("read %q = %+v; want %+v", keys[j], reads[j], entries[i])
		}
	}

	whole := ring.ID{}
	ds, err := c.Digests(ctx, to, whole, whole, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := n.store.BucketDigests(whole, whole)
	if !slices.Equal(ds, want) {
		t.Errorf("digests differ from the store's: %d vs %d", len(ds), len(want))
	}
	// Settled digests below every write here leave all of them out.
	settled, err := c.Digests(ctx, to, whole, whole, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	wantSettled, _ := n.store.SettledDigests(whole, whole, 1)
	if !slices.Equal(settled, wantSettled) || slices.Equal(settled, want) {
		t.Errorf("settled digests: got the store's %v, the plain ones %v; want the store's and not the plain ones",
			slices.Equal(settled, wantSettled), slices.Equal(settled, want))
	}

	var chunks, total int
	seen := map[string]store.Entry{}
	err = c.Fetch(ctx, to, whole, whole, allBuckets(), func(batch []store.Entry) error {
		chunks++
		if len(batch) > fetchChunkEntries {
			t.Errorf("chunk of %d entries, over %d", len(batch), fetchChunkEntries)
		}
		for _, e := range batch {
			seen[string(e.Key)] = e
		}
		total += len(batch)
		return nil
	})
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if total != len(entries) || chunks < 3 {
		t.Errorf("fetch gave %d entries in %d chunks, want %d in at least 3", total, chunks, len(entries))
	}
	for _, e := range entries {
		if !entriesEqual(seen[string(e.Key)], e) {
			t.Fatalf("fetched %+v, want %+v", seen[string(e.Key)], e)
		}
	}

	// Versions: the same entries, keys and versions, and no value.
	versions := map[string]store.Entry{}
	err = c.Versions(ctx, to, whole, whole, allBuckets(), func(batch []store.Entry) error {
		for _, e := range batch {
			if e.Value != nil {
				t.Errorf("versions of %q carry a %d-byte value", e.Key, len(e.Value))
			}
			versions[string(e.Key)] = e
		}
		return nil
	})
	if err != nil {
		t.Fatalf("versions: %v", err)
	}
	for _, e := range entries {
		v, ok := versions[string(e.Key)]
		if !ok || v.Version != e.Version || v.Tombstone != e.Tombstone {
			t.Fatalf("versions gave %+v for %q, want version %v tombstone %v", v, e.Key, e.Version, e.Tombstone)
		}
	}
	if len(versions) != len(entries) {
		t.Errorf("versions gave %d keys, want %d", len(versions), len(entries))
	}

	// An error from fn ends the stream and comes back.
	stop := errors.New("stop")
	if err := c.Fetch(ctx, to, whole, whole, allBuckets(), func([]store.Entry) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("fetch with failing fn: %v, want %v", err, stop)
	}
}

// TestLargeBatchesAreChunked sends more bytes in one Apply than one gRPC
// message may hold and fetches them back: both directions split.
func TestLargeBatchesAreChunked(t *testing.T) {
	n := startKVNode(t, kv.DefaultConfig())
	c := NewClient(WithMaxMessageBytes(testMaxMessage))
	defer c.Close()
	ctx := ctxTimeout(t, 20*time.Second)
	big := testEntries(12)
	for i := range big {
		big[i].Tombstone, big[i].Value = false, bytes.Repeat([]byte{byte(i)}, 1<<20)
	}
	applied, err := c.Apply(ctx, n.chord.Self(), big)
	if err != nil || applied != len(big) {
		t.Fatalf("apply 12 MiB: %d, %v", applied, err)
	}
	var got int
	err = c.Fetch(ctx, n.chord.Self(), ring.ID{}, ring.ID{}, allBuckets(), func(batch []store.Entry) error {
		for _, e := range batch {
			got += len(e.Value)
		}
		return nil
	})
	if err != nil || got != 12<<20 {
		t.Fatalf("fetch: %d bytes, %v", got, err)
	}
}

func entriesEqual(a, b store.Entry) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.Version == b.Version && a.Tombstone == b.Tombstone
}

func TestReplicaRejectsInvalidInput(t *testing.T) {
	n := startKVNode(t, kv.DefaultConfig())
	cc, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	r := pb.NewReplicaClient(cc)
	ctx := ctxTimeout(t, 5*time.Second)
	id := ring.HashKey([]byte("x"))
	good := &pb.Version{Hlc: 1, Node: id[:]}
	fetch := func(req *pb.FetchRequest) error {
		s, err := r.Fetch(ctx, req)
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"short version node", func() error {
			_, err := r.Apply(ctx, &pb.ApplyRequest{Entries: []*pb.Entry{{Key: []byte("k"), Version: &pb.Version{Hlc: 1, Node: id[:19]}}}})
			return err
		}, "version node"},
		{"missing version", func() error {
			_, err := r.Apply(ctx, &pb.ApplyRequest{Entries: []*pb.Entry{{Key: []byte("k")}}})
			return err
		}, "version is missing"},
		{"zero version", func() error {
			_, err := r.Apply(ctx, &pb.ApplyRequest{Entries: []*pb.Entry{{Key: []byte("k"), Version: &pb.Version{Node: make([]byte, 20)}}}})
			return err
		}, "version is zero"},
		{"nil entry", func() error {
			_, err := r.Apply(ctx, &pb.ApplyRequest{Entries: []*pb.Entry{nil}})
			return err
		}, "entry"},
		{"empty key", func() error {
			_, err := r.Apply(ctx, &pb.ApplyRequest{Entries: []*pb.Entry{{Version: good}}})
			return err
		}, "key is empty"},
		{"tombstone with value", func() error {
			_, err := r.Apply(ctx, &pb.ApplyRequest{Entries: []*pb.Entry{{Key: []byte("k"), Value: []byte("v"), Tombstone: true, Version: good}}})
			return err
		}, "tombstone carries a value"},
		{"read empty key", func() error { _, err := r.Read(ctx, &pb.ReadRequest{}); return err }, "key is empty"},
		{"read long key", func() error { _, err := r.Read(ctx, &pb.ReadRequest{Key: make([]byte, 1025)}); return err }, "--max-key-bytes"},
		{"digests short from", func() error {
			_, err := r.Digests(ctx, &pb.DigestsRequest{From: id[:3], To: id[:]})
			return err
		}, "from"},
		{"digests long to", func() error {
			_, err := r.Digests(ctx, &pb.DigestsRequest{From: id[:], To: append(id[:], 0)})
			return err
		}, "to"},
		{"fetch bucket out of range", func() error {
			return fetch(&pb.FetchRequest{From: id[:], To: id[:], Buckets: []uint32{1, store.NumBuckets}})
		}, "out of range"},
		{"fetch missing to", func() error { return fetch(&pb.FetchRequest{From: id[:], Buckets: []uint32{1}}) }, "to"},
		{"apply from a bad coordinator", func() error {
			_, err := r.Apply(ctx, &pb.ApplyRequest{Entries: []*pb.Entry{{Key: []byte("k"), Version: good}}, Coordinator: "no-port"})
			return err
		}, "coordinator"},
		{"lease without holder", func() error {
			_, err := r.GrantLease(ctx, &pb.GrantLeaseRequest{From: id[:], To: id[:], DurationMs: 1000})
			return err
		}, "holder"},
		{"lease short from", func() error {
			_, err := r.GrantLease(ctx, &pb.GrantLeaseRequest{Holder: "h:1", From: id[:3], To: id[:], DurationMs: 1000})
			return err
		}, "from"},
		{"lease too long", func() error {
			_, err := r.GrantLease(ctx, &pb.GrantLeaseRequest{Holder: "h:1", From: id[:], To: id[:], DurationMs: 3_600_000})
			return err
		}, "a release"},
		{"fetch too many buckets", func() error {
			return fetch(&pb.FetchRequest{From: id[:], To: id[:], Buckets: make([]uint32, store.NumBuckets+1)})
		}, "buckets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := status.Convert(tt.call())
			if s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), tt.want) {
				t.Errorf("got %v %q, want InvalidArgument containing %q", s.Code(), s.Message(), tt.want)
			}
		})
	}
	if _, err := r.Digests(ctx, &pb.DigestsRequest{From: id[:], To: id[:]}); err != nil {
		t.Errorf("a valid request after the invalid ones: %v", err)
	}
}

// fakeKV answers KV calls with a canned error and records whether they
// arrived marked as forwarded.
type fakeKV struct {
	err       error
	member    bool
	mu        sync.Mutex
	forwarded []bool
	// storedOnly records each replica read's flag (ReadReplica).
	storedOnly []bool
	// declineRepair is DeclineRepair's answer.
	declineRepair error
}

func (f *fakeKV) record(fwd bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forwarded = append(f.forwarded, fwd)
}

func (f *fakeKV) Get(_ context.Context, key []byte, _ kv.Consistency, fwd bool) (store.Entry, error) {
	f.record(fwd)
	return store.Entry{Key: key, Value: []byte("v"), Version: store.Version{HLC: 7, Node: ring.HashKey(key)}}, f.err
}
func (f *fakeKV) Put(_ context.Context, key, _ []byte, _ kv.Consistency, fwd bool) (store.Version, error) {
	f.record(fwd)
	return store.Version{HLC: 8, Node: ring.HashKey(key)}, f.err
}
func (f *fakeKV) Delete(_ context.Context, key []byte, _ kv.Consistency, fwd bool) (store.Version, error) {
	f.record(fwd)
	return store.Version{HLC: 9, Node: ring.HashKey(key)}, f.err
}
func (f *fakeKV) Do(ctx context.Context, req kv.Request, fwd bool) kv.Result {
	var r kv.Result
	switch req.Op {
	case kv.OpGet:
		r.Entry, r.Err = f.Get(ctx, req.Key, req.Consistency, fwd)
	case kv.OpPut:
		r.Entry.Version, r.Err = f.Put(ctx, req.Key, req.Value, req.Consistency, fwd)
	default:
		r.Entry.Version, r.Err = f.Delete(ctx, req.Key, req.Consistency, fwd)
	}
	return r
}
func (f *fakeKV) GetMany(ctx context.Context, keys [][]byte, c kv.Consistency, fwd bool) []kv.Result {
	out := make([]kv.Result, len(keys))
	for i, k := range keys {
		out[i].Entry, out[i].Err = f.Get(ctx, k, c, fwd)
	}
	return out
}
func (f *fakeKV) PutMany(ctx context.Context, items []kv.Item, c kv.Consistency, fwd bool) []kv.Result {
	out := make([]kv.Result, len(items))
	for i, it := range items {
		out[i].Entry.Key = it.Key
		out[i].Entry.Version, out[i].Err = f.Put(ctx, it.Key, it.Value, c, fwd)
	}
	return out
}
func (f *fakeKV) DeleteMany(ctx context.Context, keys [][]byte, c kv.Consistency, fwd bool) []kv.Result {
	out := make([]kv.Result, len(keys))
	for i, k := range keys {
		out[i].Entry = store.Entry{Key: k, Tombstone: true}
		out[i].Entry.Version, out[i].Err = f.Delete(ctx, k, c, fwd)
	}
	return out
}
func (f *fakeKV) ApplyLocal([]store.Entry) (int, error)            { return 0, f.err }
func (f *fakeKV) ApplyFrom(chord.Peer, []store.Entry) (int, error) { return 0, f.err }
func (f *fakeKV) GrantLease(chord.Peer, ring.ID, ring.ID, time.Duration) error {
	return f.err
}
func (f *fakeKV) ReadReplica(_ context.Context, keys [][]byte, storedOnly bool, _ int) ([]kv.ReadResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.storedOnly = append(f.storedOnly, storedOnly)
	return make([]kv.ReadResult, len(keys)), f.err
}
func (f *fakeKV) DeclineRepair() error { return f.declineRepair }
func (f *fakeKV) IsMember() bool       { return f.member }
func (f *fakeKV) SettledDigests(_, _ ring.ID, _ uint64) ([]store.BucketDigest, error) {
	return nil, f.err
}
func (f *fakeKV) BucketEntries(int, ring.ID, ring.ID, func(store.Entry) bool) error {
	return f.err
}

func startFakeKV(t *testing.T, f *fakeKV) chord.Peer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	NewKVServer(f, f, f).Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return chord.NewPeer(lis.Addr().String())
}

// A read lease granted over the real layers: the holder's and repair
// writes pass, another coordinator's is refused as FailedPrecondition, which
// the client turns back into kv.ErrLeased naming the holder, and so is a
// second holder's overlapping grant.
func TestLeaseRoundTrip(t *testing.T) {
	cfg := kv.DefaultConfig()
	cfg.ReadLease = 5 * time.Second // it grants no longer lease than its own
	n := startKVNode(t, cfg)
	to := n.chord.Self()
	c := NewClient()
	defer c.Close()
	ctx := ctxTimeout(t, 10*time.Second)
	holder, other := chord.NewPeer("127.0.0.1:1"), chord.NewPeer("127.0.0.1:2")
	whole := ring.ID{}
	if err := c.GrantLease(ctx, to, holder, whole, whole, 5*time.Second); err != nil {
		t.Fatalf("grant: %v", err)
	}
	err := c.GrantLease(ctx, to, other, whole, whole, 5*time.Second)
	if !errors.Is(err, kv.ErrLeased) || !strings.Contains(err.Error(), holder.Addr) {
		t.Errorf("overlapping grant: %v, want ErrLeased naming %s", err, holder.Addr)
	}
	entries := testEntries(3)
	_, err = c.Replicate(ctx, to, other, entries)
	if !errors.Is(err, kv.ErrLeased) || !strings.Contains(err.Error(), holder.Addr) {
		t.Errorf("write another node coordinates: %v, want ErrLeased naming %s", err, holder.Addr)
	}
	// The refusal is said once, in the node's words, not again inside
	// gRPC's "rpc error: code = ... desc = ...".
	if err != nil && (strings.Count(err.Error(), kv.ErrLeased.Error()) != 1 || strings.Contains(err.Error(), "rpc error")) {
		t.Errorf("write another node coordinates: %q repeats the refusal or carries gRPC's wrapping", err)
	}
	if applied, err := c.Replicate(ctx, to, holder, entries[:2]); err != nil || applied != 2 {
		t.Errorf("write the holder coordinates: %d, %v", applied, err)
	}
	if applied, err := c.Apply(ctx, to, entries); err != nil || applied != 1 {
		t.Errorf("repair write: %d, %v, want the 1 entry not yet applied", applied, err)
	}
}

// TestKVErrorMapping checks both directions: the status a node answers for
// each kv error, and what Forward turns that status back into.
func TestKVErrorMapping(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		code       codes.Code
		forwardErr error // what errors.Is must find in Forward's error
		message    string
	}{
		{"ok", nil, codes.OK, nil, ""},
		{"not found", kv.ErrNotFound, codes.NotFound, kv.ErrNotFound, "key not found"},
		{"invalid", fmt.Errorf("%w: key is 2000 bytes, the limit is 1024 bytes (--max-key-bytes)", kv.ErrInvalidArgument),
			codes.InvalidArgument, kv.ErrInvalidArgument, "the limit is 1024 bytes (--max-key-bytes)"},
		{"unavailable", fmt.Errorf("%w: put: 1 of the 2 replicas required answered", kv.ErrUnavailable), codes.Unavailable, nil, "replicas required"},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), codes.DeadlineExceeded, nil, "deadline"},
		{"remote status passes through", fmt.Errorf("hop: %w", status.Error(codes.ResourceExhausted, "too big")), codes.ResourceExhausted, nil, "too big"},
		{"other", errors.New("disk on fire"), codes.Internal, nil, "disk on fire"},
	}
	c := NewClient()
	defer c.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeKV{err: tt.err, member: true}
			to := startFakeKV(t, f)
			ctx := ctxTimeout(t, 5*time.Second)
			for _, op := range []kv.Op{kv.OpGet, kv.OpPut, kv.OpDelete} {
				e, err := c.Forward(ctx, to, kv.Request{Op: op, Key: []byte("k"), Value: []byte("v")})
				if got := status.Code(errors.Unwrap(err)); tt.forwardErr == nil && status.Code(err) != tt.code {
					t.Errorf("%s: code %v (%v), want %v", op, status.Code(err), got, tt.code)
				}
				if tt.forwardErr != nil && !errors.Is(err, tt.forwardErr) {
					t.Errorf("%s: %v does not wrap %v", op, err, tt.forwardErr)
				}
				if err != nil && !strings.Contains(err.Error(), tt.message) {
					t.Errorf("%s: %q does not say %q", op, err, tt.message)
				}
				if err == nil && (e.Version.HLC == 0 || e.Version.Node != ring.HashKey([]byte("k"))) {
					t.Errorf("%s: version %v not carried back", op, e.Version)
				}
				if tt.code == codes.InvalidArgument && strings.Count(err.Error(), "invalid argument") != 1 {
					t.Errorf("%s: %q repeats \"invalid argument\"", op, err)
				}
			}
			for _, fwd := range f.forwarded {
				if !fwd {
					t.Errorf("a forwarded request arrived unmarked")
				}
			}
		})
	}
}

func TestKVRequestsWithoutTheHeaderAreNotForwarded(t *testing.T) {
	f := &fakeKV{member: true}
	to := startFakeKV(t, f)
	c := dialKV(t, to.Addr)
	if _, err := c.Get(ctxTimeout(t, 5*time.Second), &pb.GetRequest{Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	if len(f.forwarded) != 1 || f.forwarded[0] {
		t.Errorf("forwarded = %v, want [false]", f.forwarded)
	}
}

// A replica read carries stored_only from ReadStored, and not from Read,
// to the node: a joiner's read of its successor must not be passed on again.
func TestReadStoredReachesTheNode(t *testing.T) {
	f := &fakeKV{member: true}
	to := startFakeKV(t, f)
	c := NewClient()
	defer c.Close()
	ctx := ctxTimeout(t, 5*time.Second)
	if _, err := c.Read(ctx, to, [][]byte{[]byte("k")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadStored(ctx, to, [][]byte{[]byte("k")}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Equal(f.storedOnly, []bool{false, true}) {
		t.Errorf("stored_only of a Read and a ReadStored = %v, want [false true]", f.storedOnly)
	}
}

// A node still taking over its ranges declines periodic repair's digest
// requests, Unavailable, and answers a take-over's or a hand-off's.
func TestDigestsForRepairDeclinedDuringTakeOver(t *testing.T) {
	f := &fakeKV{member: true, declineRepair: fmt.Errorf("%w: still taking over", kv.ErrUnavailable)}
	to := startFakeKV(t, f)
	c := NewClient()
	defer c.Close()
	ctx := ctxTimeout(t, 5*time.Second)
	var whole ring.ID
	if _, err := c.Digests(ctx, to, whole, whole, 0, false); err != nil {
		t.Errorf("digests for a take-over: %v", err)
	}
	if _, err := c.Digests(ctx, to, whole, whole, 0, true); status.Code(err) != codes.Unavailable {
		t.Errorf("digests for repair: %v, want Unavailable", err)
	}
}

func TestNonMemberRefusesKVRequests(t *testing.T) {
	to := startFakeKV(t, &fakeKV{member: false})
	c := dialKV(t, to.Addr)
	_, err := c.Put(ctxTimeout(t, 5*time.Second), &pb.PutRequest{Key: []byte("k")})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("put on a non-member: %v, want Unavailable", err)
	}
}

// A node marks the Unavailable statuses it decides on itself (NodeAnswered),
// so that a client can tell them from gRPC's for a call that reached no
// node, which the CLI explains with a TLS hint.
func TestNodeAnsweredOnlyForANodesOwnUnavailable(t *testing.T) {
	closed := testnet.Addr(t)
	tests := []struct {
		name string
		addr string
		want bool
	}{
		{"no quorum", startFakeKV(t, &fakeKV{member: true, err: fmt.Errorf("%w: put: 0 of the 2 replicas required answered", kv.ErrUnavailable)}).Addr, true},
		{"not a ring member", startFakeKV(t, &fakeKV{member: false}).Addr, true},
		{"nothing listening", closed, false},
		{"not found", startFakeKV(t, &fakeKV{member: true, err: kv.ErrNotFound}).Addr, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dialKV(t, tt.addr).Put(ctxTimeout(t, 5*time.Second), &pb.PutRequest{Key: []byte("k")})
			if err == nil {
				t.Fatal("put succeeded")
			}
			if got := NodeAnswered(err); got != tt.want {
				t.Errorf("NodeAnswered(%v) = %v, want %v", err, got, tt.want)
			}
		})
	}
	if NodeAnswered(status.Error(codes.Unavailable, "connection error")) {
		t.Error("a bare Unavailable counted as a node's answer")
	}
	if !NodeAnswered(toStatus(fmt.Errorf("lookup: %w", chord.ErrLookupFailed))) {
		t.Error("a failed lookup's Unavailable is not marked as the node's")
	}
}

// FuzzDecodeKVWire feeds arbitrary bytes to every decoder of the KV and
// Replica wire: what a node accepts must satisfy the store's preconditions.
func FuzzDecodeKVWire(f *testing.F) {
	id := ring.HashKey([]byte("k"))
	v := &pb.Version{Hlc: 5, Node: id[:]}
	for _, m := range []proto.Message{
		&pb.ApplyRequest{Entries: []*pb.Entry{{Key: []byte("k"), Value: []byte("v"), Version: v}, {Key: []byte("t"), Tombstone: true, Version: v}}},
		&pb.ReadResponse{Found: true, Entry: &pb.Entry{Key: []byte("k"), Version: v}},
		&pb.DigestsResponse{Digests: []*pb.BucketDigest{{Bucket: 1, Digest: 2}, {Bucket: 4095}}},
		&pb.FetchRequest{From: id[:], To: id[:], Buckets: []uint32{0, 4095, 4096}},
		&pb.GetRequest{Key: []byte("k"), Consistency: 3},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var apply pb.ApplyRequest
		if proto.Unmarshal(b, &apply) == nil {
			if es, err := decodeEntries(apply.GetEntries()); err == nil {
				for _, e := range es {
					if len(e.Key) == 0 || e.Version.IsZero() || (e.Tombstone && e.Value != nil) {
						t.Fatalf("accepted an entry the store would refuse: %+v", e)
					}
				}
			}
		}
		var read pb.ReadResponse
		if proto.Unmarshal(b, &read) == nil {
			_, _ = decodeEntry(read.GetEntry())
		}
		var digests pb.DigestsResponse
		if proto.Unmarshal(b, &digests) == nil {
			if ds, err := decodeDigests(digests.GetDigests()); err == nil {
				for _, d := range ds {
					if d.Bucket < 0 || d.Bucket >= store.NumBuckets {
						t.Fatalf("accepted bucket %d", d.Bucket)
					}
				}
			}
		}
		var fetch pb.FetchRequest
		if proto.Unmarshal(b, &fetch) == nil {
			_, _, _ = decodeRange(fetch.GetFrom(), fetch.GetTo())
			if bs, err := decodeBuckets(fetch.GetBuckets()); err == nil {
				for _, bk := range bs {
					if bk < 0 || bk >= store.NumBuckets {
						t.Fatalf("accepted bucket %d", bk)
					}
				}
			}
		}
		var get pb.GetRequest
		if proto.Unmarshal(b, &get) == nil {
			_, _ = decodeConsistency(get.GetConsistency())
		}
	})
}

// oldReplica is a Replica service from before ReadMany: single-key Read only.
type oldReplica struct {
	pb.UnimplementedReplicaServer
	reads int
}

func (o *oldReplica) Read(_ context.Context, req *pb.ReadRequest) (*pb.ReadResponse, error) {
	o.reads++
	if string(req.GetKey()) == "absent" {
		return &pb.ReadResponse{}, nil
	}
	e := store.Entry{Key: req.GetKey(), Value: []byte("v"), Version: store.Version{HLC: 1, Node: ring.HashKey(req.GetKey())}}
	return &pb.ReadResponse{Found: true, Entry: encodeEntry(e)}, nil
}

// A node reading from a peer that predates ReadMany falls back to one Read
// per key, so replicas keep answering during a rolling upgrade.
func TestReadFallsBackToSingleReads(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	old := &oldReplica{}
	gs := grpc.NewServer()
	pb.RegisterReplicaServer(gs, old)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	c := NewClient()
	defer c.Close()
	keys := [][]byte{[]byte("a"), []byte("absent"), []byte("b")}
	got, err := c.Read(ctxTimeout(t, 5*time.Second), chord.NewPeer(lis.Addr().String()), keys)
	if err != nil || len(got) != len(keys) {
		t.Fatalf("read: %d results, %v", len(got), err)
	}
	for i, want := range []bool{true, false, true} {
		if got[i].Found != want || (want && string(got[i].Entry.Key) != string(keys[i])) {
			t.Errorf("key %s: %+v, want found %v", keys[i], got[i], want)
		}
	}
	if old.reads != len(keys) {
		t.Errorf("%d single reads for %d keys", old.reads, len(keys))
	}
}

// Fetch on oldReplica ignores versions_only, as a node from before the field
// does, and sends values.
func (o *oldReplica) Fetch(_ *pb.FetchRequest, stream grpc.ServerStreamingServer[pb.FetchResponse]) error {
	e := store.Entry{Key: []byte("k"), Value: []byte("value"), Version: store.Version{HLC: 7, Node: ring.HashKey([]byte("k"))}}
	return stream.Send(&pb.FetchResponse{Entries: []*pb.Entry{encodeEntry(e)}})
}

// Versions from a peer that predates versions_only still yields keys and
// versions only: the values it sends anyway are dropped.
func TestVersionsFromAnOldPeerDropValues(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterReplicaServer(gs, &oldReplica{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	c := NewClient()
	defer c.Close()
	var got []store.Entry
	err = c.Versions(ctxTimeout(t, 5*time.Second), chord.NewPeer(lis.Addr().String()), ring.ID{}, ring.ID{}, []int{0}, func(batch []store.Entry) error {
		got = append(got, batch...)
		return nil
	})
	if err != nil || len(got) != 1 {
		t.Fatalf("versions: %d entries, %v", len(got), err)
	}
	if string(got[0].Key) != "k" || got[0].Version.HLC != 7 || got[0].Value != nil {
		t.Errorf("versions gave %+v; want key k, HLC 7 and no value", got[0])
	}
}

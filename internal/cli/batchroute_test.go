package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

func TestRouteByOwner(t *testing.T) {
	tests := []struct {
		routing string
		lines   int
		want    bool
	}{
		{routingAuto, 1, false},
		{routingAuto, batchItems, false}, // one request: the ring walk would cost more
		{routingAuto, batchItems + 1, true},
		{routingClient, 1, true},
		{routingEndpoint, 10 * batchItems, false},
	}
	for _, tt := range tests {
		if got := routeByOwner(tt.routing, tt.lines); got != tt.want {
			t.Errorf("routeByOwner(%q, %d) = %v, want %v", tt.routing, tt.lines, got, tt.want)
		}
	}
}

func TestGroupBy(t *testing.T) {
	// The owner is the key's first letter.
	owner := func(l batchLine) string { return string(l.key[:1]) }
	tests := []struct {
		name string
		keys []string
		want [][]string
	}{
		{"none", nil, nil},
		{"one owner", []string{"a1", "a2", "a1"}, [][]string{{"a1", "a2", "a1"}}},
		{"input order within each, groups by first line", []string{"b1", "a1", "b2", "c1", "a2", "b1"},
			[][]string{{"b1", "b2", "b1"}, {"a1", "a2"}, {"c1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lines []batchLine
			for i, k := range tt.keys {
				lines = append(lines, batchLine{line: i + 1, key: []byte(k)})
			}
			var got [][]string
			seen := 0
			for _, g := range groupBy(lines, owner) {
				var keys []string
				for i, l := range g {
					keys = append(keys, string(l.key))
					if i > 0 && l.line <= g[i-1].line {
						t.Errorf("group %v: line %d after line %d", keys, l.line, g[i-1].line)
					}
				}
				seen += len(g)
				got = append(got, keys)
			}
			if !slices.EqualFunc(got, tt.want, slices.Equal) || seen != len(lines) {
				t.Errorf("groups %q, want %q", got, tt.want)
			}
		})
	}
}

// TestBatchRoutesToOwners drives put, get and del --batch against a 3-node
// ring and checks, through batchRouted, that with client routing every
// call went to the owner of all its keys: no node had to forward a key
// (the chordkv-owner header would say so), and none went through the
// endpoint.
func TestBatchRoutesToOwners(t *testing.T) {
	a, b, _, dead := startRing(t)
	var got []batchRouteStats
	batchRouted = func(s batchRouteStats) { got = append(got, s) }
	t.Cleanup(func() { batchRouted = nil })
	last := func(t *testing.T) batchRouteStats {
		t.Helper()
		if len(got) == 0 {
			t.Fatal("batchRouted was not called")
		}
		return got[len(got)-1]
	}
	toOwners := func(t *testing.T, what string) {
		t.Helper()
		if s := last(t); s.toOwner == 0 || s.viaEndpoints != 0 || s.redirects != 0 {
			t.Errorf("%s: %+v; want every call to the owner (toOwner > 0, nothing via endpoints, no redirects)", what, s)
		}
	}

	// More lines than one request: auto routes them. "dup" is written
	// three times, in different requests; the last line must win.
	const n = 3*batchItems + 7
	var input, keys strings.Builder
	for i := range n {
		fmt.Fprintf(&input, "k%05d v%d\n", i, i)
		fmt.Fprintf(&keys, "k%05d\n", i)
		if i%(batchItems+100) == 0 {
			fmt.Fprintf(&input, "dup %d\n", i)
		}
	}
	r := runCLIWithInput([]byte(input.String()), "put", "--batch", "--endpoints", dead+","+a, "-o", "json")
	var put putBatchJSON
	if err := json.Unmarshal([]byte(r.stdout), &put); r.code != ExitOK || err != nil || put.Written != n+3 {
		t.Fatalf("put --batch: exit %d, %v, %+v: %s", r.code, err, put, r.stderr)
	}
	toOwners(t, "put --batch")
	if r := runCLI("get", "dup", "--endpoints", b); r.stdout != fmt.Sprint(2*(batchItems+100)) {
		t.Errorf("get dup: exit %d, %q; want the input's last line's value", r.code, r.stdout)
	}

	// get --batch answers in input order, whatever the owners' order.
	r = runCLIWithInput([]byte(keys.String()), "get", "--batch", "--routing", "client", "--endpoints", b, "-o", "json")
	var rep getBatchJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != ExitOK || err != nil || rep.Found != n || len(rep.Items) != n {
		t.Fatalf("get --batch: exit %d, %v, found %d of %d: %s", r.code, err, rep.Found, n, r.stderr)
	}
	for i, it := range rep.Items {
		if want := fmt.Sprintf("k%05d", i); it.Key != want || string(it.Value) != fmt.Sprint("v", i) {
			t.Fatalf("item %d: %q = %q, want %s = v%d", i, it.Key, it.Value, want, i)
		}
	}
	toOwners(t, "get --batch --routing client")

	// Endpoint routing sends everything through the endpoint.
	r = runCLIWithInput([]byte(keys.String()), "get", "--batch", "--routing", "endpoint", "--endpoints", b)
	if s := last(t); r.code != ExitOK || s.toOwner != 0 || s.viaEndpoints == 0 {
		t.Errorf("get --batch --routing endpoint: exit %d, %+v: %s", r.code, s, r.stderr)
	}

	// A ring walk that fails is noted, and the endpoints take the lines.
	r = runCLIWithInput([]byte("x 1\n"), "put", "--batch", "--routing", "client", "--endpoints", dead, "--timeout", "300ms")
	if s := last(t); r.code != ExitUnavailable || s.toOwner != 0 || s.viaEndpoints != 1 ||
		!strings.Contains(r.stderr, "put --batch: sending through --endpoints, as the ring walk failed") {
		t.Errorf("put --batch --routing client through a dead endpoint: exit %d, %+v, stderr %q", r.code, s, r.stderr)
	}

	r = runCLIWithInput([]byte(keys.String()), "del", "--batch", "--endpoints", a)
	if r.code != ExitOK || r.stdout != fmt.Sprintf("deleted %d, failed 0\n", n) {
		t.Fatalf("del --batch: exit %d, %q: %s", r.code, r.stdout, r.stderr)
	}
	toOwners(t, "del --batch")
	if r := runCLI("get", "k00000", "--endpoints", b); r.code != ExitNotFound {
		t.Errorf("get of a deleted key: exit %d, %q", r.code, r.stdout)
	}
}

func TestBatchRoutingFlag(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"without --batch", []string{"put", "k", "v", "--routing", "client"}, "--routing applies only with --batch"},
		{"unknown", []string{"get", "--batch", "--routing", "owner"}, `--routing must be auto, client or endpoint, not "owner"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLIWithInput([]byte("k\n"), tt.args...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, ExitUsage, tt.stderr)
			}
		})
	}
}

// unavailableOwner is a ring member as a ring walk sees it (it answers
// Status, its successor is a real node) whose KV calls all fail
// Unavailable: an owner that died after the client's walk.
type unavailableOwner struct {
	pb.UnimplementedAdminServer
	pb.UnimplementedKVServer
	addr, successor string
	calls           atomic.Int64 // MultiPut calls
}

func (u *unavailableOwner) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{Addr: u.addr, Id: chord.NewPeer(u.addr).ID.String(), Member: true, Successors: []string{u.successor}}, nil
}

func (u *unavailableOwner) MultiPut(context.Context, *pb.MultiPutRequest) (*pb.MultiPutResponse, error) {
	u.calls.Add(1)
	return nil, status.Error(codes.Unavailable, "owner gone")
}

// An owner that does not answer gets one call per lane: the rest of the
// lane's lines go through the endpoints, and every line is written.
func TestBatchFallsBackFromAnUnavailableOwner(t *testing.T) {
	a, b, c, _ := startRing(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &unavailableOwner{addr: lis.Addr().String(), successor: a}
	srv := grpc.NewServer()
	pb.RegisterAdminServer(srv, fake)
	pb.RegisterKVServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	var got []batchRouteStats
	batchRouted = func(s batchRouteStats) { got = append(got, s) }
	t.Cleanup(func() { batchRouted = nil })

	// Lines until the fake owns enough of them for several calls per lane.
	var members []ring.ID
	for _, addr := range []string{a, b, c, fake.addr} {
		members = append(members, chord.NewPeer(addr).ID)
	}
	slices.SortFunc(members, ring.ID.Cmp)
	fakeID := chord.NewPeer(fake.addr).ID
	ownedByFake := func(key []byte) bool {
		h := ring.HashKey(key)
		for _, m := range members {
			if h.Cmp(m) <= 0 {
				return m == fakeID
			}
		}
		return members[0] == fakeID
	}
	// Only the fake's keys and a few of the real owners', so that the
	// test stays light on a loaded machine.
	var in strings.Builder
	var first, firstValue string // the first pair written
	n, fakes, reals := 0, 0, 0
	for i := 0; fakes < 2*batchLanesPerOwner*batchItems && i < 2_000_000; i++ {
		key := fmt.Sprintf("f%07d", i)
		if ownedByFake([]byte(key)) {
			fakes++
		} else if reals++; reals > 100 {
			continue
		}
		if first == "" {
			first, firstValue = key, fmt.Sprint("v", i)
		}
		fmt.Fprintf(&in, "%s v%d\n", key, i)
		n++
	}
	// The walk starts at the fake member, whose successor leads round the
	// real ring; the endpoints' failover tries it first too.
	// A generous --timeout: a slow call is not what this test is about.
	r := runCLIWithInput([]byte(in.String()), "put", "--batch", "--routing", "client", "--endpoints", fake.addr+","+a, "--timeout", "20s", "-o", "json")
	var rep putBatchJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != ExitOK || err != nil || rep.Written != n {
		t.Fatalf("put --batch of %d with an unavailable owner of %d: exit %d, %v, %+v: %s", n, fakes, r.code, err, rep, r.stderr)
	}
	if len(got) != 1 {
		t.Fatalf("batchRouted called %d times", len(got))
	}
	s := got[0]
	if s.toOwner == 0 || s.viaEndpoints == 0 {
		t.Errorf("%+v: want calls to the real owners and, for the fake's lines, through the endpoints", s)
	}
	// Every call through the endpoints tried the fake first; the rest of
	// its calls were the lanes' direct attempts, one each at most.
	if direct := fake.calls.Load() - s.viaEndpoints; direct < 1 || direct > batchLanesPerOwner {
		t.Errorf("the unavailable owner was called directly %d times, want 1 to %d (one per lane)", direct, batchLanesPerOwner)
	}
	if r := runCLI("get", first, "--endpoints", b); r.code != ExitOK || r.stdout != firstValue {
		t.Errorf("get %s: exit %d, %q: %s", first, r.code, r.stdout, r.stderr)
	}
}

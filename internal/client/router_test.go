package client

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/servertest"
	"github.com/chordkv/chordkv/internal/transport"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// oracleOwner is the owner by definition, by brute force: the member with
// the smallest ID at or after id, else (wrapping) the smallest ID of all.
func oracleOwner(members []Member, id ring.ID) Member {
	var best, smallest *Member
	for i := range members {
		m := &members[i]
		if smallest == nil || m.ID.Cmp(smallest.ID) < 0 {
			smallest = m
		}
		if m.ID.Cmp(id) >= 0 && (best == nil || m.ID.Cmp(best.ID) < 0) {
			best = m
		}
	}
	if best == nil {
		return *smallest
	}
	return *best
}

func idOf(b byte) ring.ID {
	var id ring.ID
	id[0] = b
	return id
}

func setMembers(r *Router, ms []Member) {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b Member) int { return a.ID.Cmp(b.ID) })
	r.members.Store(&ms)
}

func TestOwnerMatchesOracle(t *testing.T) {
	var maxID ring.ID
	for i := range maxID {
		maxID[i] = 0xff
	}
	three := []Member{{idOf(0x40), "a"}, {idOf(0x80), "b"}, {idOf(0xc0), "c"}}
	tests := []struct {
		name    string
		members []Member
		id      ring.ID
		want    string
	}{
		{"one member owns everything", []Member{{idOf(0x80), "a"}}, idOf(0x10), "a"},
		{"one member, id after it wraps", []Member{{idOf(0x80), "a"}}, idOf(0x90), "a"},
		{"zero id", three, ring.ID{}, "a"},
		{"id equal to a member's is that member's", three, idOf(0x80), "b"},
		{"just after a member goes to the next", three, idOf(0x80).AddPow2(0), "c"},
		{"past the largest wraps to the smallest", three, idOf(0xc0).AddPow2(0), "a"},
		{"largest id wraps", three, maxID, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(Config{})
			defer r.Close()
			setMembers(r, tt.members)
			got, ok := ownerOf(*r.members.Load(), tt.id)
			if !ok || got.Addr != tt.want {
				t.Errorf("owner of %s = %v %v, want %s", tt.id.Short(), got, ok, tt.want)
			}
			if o := oracleOwner(tt.members, tt.id); o.Addr != tt.want {
				t.Fatalf("the oracle says %s: the table is wrong", o.Addr)
			}
		})
	}

	// Random rings and keys against the oracle.
	rng := mrand.New(mrand.NewPCG(1, 2))
	for size := 1; size <= 20; size++ {
		members := make([]Member, size)
		for i := range members {
			members[i] = Member{ID: ring.HashAddr(fmt.Sprintf("10.0.0.%d:%d", i, rng.IntN(65536))), Addr: fmt.Sprint(i)}
		}
		r := New(Config{})
		setMembers(r, members)
		for k := range 500 {
			key := fmt.Appendf(nil, "key-%d-%d", size, k)
			got, ok := r.Owner(key)
			if want := oracleOwner(members, ring.HashKey(key)); !ok || got != want {
				t.Fatalf("ring of %d: owner of %q = %v, want %v", size, key, got, want)
			}
		}
		r.Close()
	}
}

func TestNoMembersIsNoRoute(t *testing.T) {
	r := New(Config{}) // no seeds: refreshes fail at once
	defer r.Close()
	if _, ok := r.Owner([]byte("k")); ok {
		t.Error("an empty router named an owner")
	}
	err := r.Do(context.Background(), []byte("k"), func(context.Context, grpc.ClientConnInterface, ...grpc.CallOption) error {
		t.Error("call ran without an owner")
		return nil
	})
	if !errors.Is(err, ErrNoRoute) || !Unroutable(err) {
		t.Errorf("Do = %v, want ErrNoRoute", err)
	}
}

// startNode runs an in-process node on a loopback port.
func startNode(t *testing.T, join ...string) string {
	t.Helper()
	return servertest.Start(t, nil, join...)
}

func dialOpts() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
}

// startRing starts three nodes and waits until a Router sees all three and
// every one of them reports ready (pointers confirmed).
func startRing(t *testing.T) []Member {
	t.Helper()
	a := startNode(t)
	addrs := []string{a, startNode(t, a), startNode(t, a)}
	r := New(Config{Seeds: addrs, DialOptions: dialOpts(), CallTimeout: time.Second})
	defer r.Close()
	waitFor(t, "a settled ring of three", func() bool {
		if err := r.Refresh(context.Background()); err != nil || len(r.Members()) != 3 {
			return false
		}
		for _, addr := range addrs {
			st, err := r.status(context.Background(), addr)
			if err != nil || !st.GetReady() || len(st.GetSuccessors()) != 2 {
				return false
			}
		}
		return true
	})
	want := make([]Member, len(addrs))
	for i, addr := range addrs {
		want[i] = Member{ID: ring.HashAddr(addr), Addr: addr}
	}
	slices.SortFunc(want, func(a, b Member) int { return a.ID.Cmp(b.ID) })
	if got := r.Members(); !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	return want
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func put(key []byte) CallFunc {
	return func(ctx context.Context, cc grpc.ClientConnInterface, opts ...grpc.CallOption) error {
		_, err := pb.NewKVClient(cc).Put(ctx, &pb.PutRequest{Key: key, Value: []byte("v")}, opts...)
		return err
	}
}

func get(key []byte) CallFunc {
	return func(ctx context.Context, cc grpc.ClientConnInterface, opts ...grpc.CallOption) error {
		_, err := pb.NewKVClient(cc).Get(ctx, &pb.GetRequest{Key: key}, opts...)
		return err
	}
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestOwnerHeader checks the server side: a node names the coordinator in
// chordkv-owner only for a client request it forwarded.
func TestOwnerHeader(t *testing.T) {
	members := startRing(t)
	key := []byte("header-key")
	owner := oracleOwner(members, ring.HashKey(key))
	var other string
	for _, m := range members {
		if m.Addr != owner.Addr {
			other = m.Addr
		}
	}
	tests := []struct {
		name      string
		to        string
		forwarded bool
		want      string // the header's value, "" for none
	}{
		{"to the owner", owner.Addr, false, ""},
		{"to another node", other, false, owner.Addr},
		{"forwarded by a node", other, true, ""},
	}
	for _, tt := range tests {
		// put before get: the get must find the key.
		for _, c := range []struct {
			op   string
			call CallFunc
		}{{"put", put(key)}, {"get", get(key)}} {
			call := c.call
			t.Run(tt.name+"/"+c.op, func(t *testing.T) {
				cc, err := grpc.NewClient(tt.to, dialOpts()...)
				if err != nil {
					t.Fatal(err)
				}
				defer cc.Close()
				ctx := callCtx(t)
				if tt.forwarded {
					ctx = metadata.AppendToOutgoingContext(ctx, transport.ForwardedHeader, "1")
				}
				var hdr metadata.MD
				if err := call(ctx, cc, grpc.Header(&hdr)); err != nil {
					t.Fatal(err)
				}
				got := hdr.Get(transport.OwnerHeader)
				if (tt.want == "" && len(got) != 0) || (tt.want != "" && !slices.Equal(got, []string{tt.want})) {
					t.Errorf("%s = %q, want %q", transport.OwnerHeader, got, tt.want)
				}
			})
		}
	}
}

// TestRouting sends keys through a Router with a fresh view (no
// redirects), a stale one (redirects, then a refresh corrects it) and one
// naming a dead node (unavailable, then a refresh corrects it).
func TestRouting(t *testing.T) {
	members := startRing(t)
	rotated := make([]Member, len(members)) // right IDs, every address one off
	for i, m := range members {
		rotated[i] = Member{ID: m.ID, Addr: members[(i+1)%len(members)].Addr}
	}
	// The dead node's port stays held, by a listener that hangs up on
	// every caller: a closed port could be handed to a node of another test
	// package running at the same time, which then answered every put (CI
	// saw it once).
	dead := slices.Clone(members)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	// The dead node is the owner of the first key sent, so that some call
	// reaches it: a member's range can be too small to hold any of the 60
	// keys (CI saw the first member's hold none).
	owner, _ := ownerOf(members, ring.HashKey([]byte("routing-0")))
	dead[slices.Index(members, owner)].Addr = lis.Addr().String()

	tests := []struct {
		name         string
		view         []Member
		wantRedirect bool
		wantUnavail  bool
	}{
		{"fresh view", members, false, false},
		{"stale view", rotated, true, false},
		{"a dead node in the view", dead, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(Config{Seeds: []string{members[1].Addr}, DialOptions: dialOpts(), CallTimeout: time.Second})
			defer r.Close()
			setMembers(r, tt.view)
			var unroutable int
			for i := range 60 {
				key := fmt.Appendf(nil, "routing-%d", i)
				err := r.Do(callCtx(t), key, put(key))
				if Unroutable(err) {
					unroutable++
					continue
				}
				if err != nil {
					t.Fatalf("put %s: %v", key, err)
				}
			}
			st := r.Stats()
			if (st.Redirects > 0) != tt.wantRedirect || (st.OwnerUnavailable > 0) != tt.wantUnavail || (unroutable > 0) != tt.wantUnavail {
				t.Errorf("stats %+v, %d unroutable: want redirects %v, unavailable %v", st, unroutable, tt.wantRedirect, tt.wantUnavail)
			}
			waitFor(t, "the view to be corrected", func() bool { return slices.Equal(r.Members(), members) })
			// Once corrected, no call is redirected or unroutable.
			before := r.Stats()
			for i := range 60 {
				key := fmt.Appendf(nil, "routing-%d", i)
				if err := r.Do(callCtx(t), key, get(key)); err != nil {
					t.Fatalf("get %s: %v", key, err)
				}
			}
			if after := r.Stats(); after.Redirects != before.Redirects || after.OwnerUnavailable != before.OwnerUnavailable {
				t.Errorf("after the refresh: stats %+v, before %+v", after, before)
			}
		})
	}
}

// TestConcurrentUse runs calls, refreshes and stale views at once; run it
// with -race.
func TestConcurrentUse(t *testing.T) {
	members := startRing(t)
	r := New(Config{Seeds: []string{members[0].Addr}, DialOptions: dialOpts(), CallTimeout: time.Second, MinRefreshInterval: 10 * time.Millisecond})
	defer r.Close()
	if err := r.Refresh(callCtx(t)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 8 {
		wg.Go(func() {
			for i := range 100 {
				// Each get reads the key the put before it wrote.
				key := fmt.Appendf(nil, "conc-%d-%d", w, i-i%2)
				call := put(key)
				if i%2 == 1 {
					call = get(key)
				}
				if err := r.Do(callCtx(t), key, call); err != nil {
					errs <- fmt.Errorf("call %d of worker %d: %w", i, w, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			if i%2 == 0 {
				// A stale view: rotated addresses; redirects correct it.
				rot := make([]Member, len(members))
				for j, m := range members {
					rot[j] = Member{ID: m.ID, Addr: members[(j+1)%len(members)].Addr}
				}
				setMembers(r, rot)
			} else if err := r.Refresh(callCtx(t)); err != nil {
				errs <- err
				return
			}
			_ = r.Members()
			time.Sleep(5 * time.Millisecond)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitFor(t, "a correct view", func() bool { return slices.Equal(r.Members(), members) })
}

// A refresh retires the connections of nodes that are no longer members
// (seeds excepted) and a refresh retireGrace later closes them; a node that
// comes back gets a fresh connection.
func TestRetireDepartedMembers(t *testing.T) {
	r := New(Config{Seeds: []string{"seed:1"}, DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
	defer r.Close()
	conns := map[string]*grpc.ClientConn{}
	for _, addr := range []string{"seed:1", "a:1", "b:1"} {
		cc, err := r.conn(addr)
		if err != nil {
			t.Fatal(err)
		}
		conns[addr] = cc
	}
	pooled := func() []string {
		r.mu.RLock()
		defer r.mu.RUnlock()
		var out []string
		for addr := range r.conns {
			out = append(out, addr)
		}
		slices.Sort(out)
		return out
	}
	start := time.Now()
	r.retire([]Member{{Addr: "a:1"}}, start)
	if got := pooled(); !slices.Equal(got, []string{"a:1", "seed:1"}) {
		t.Fatalf("pool after b left: %v", got)
	}
	if s := conns["b:1"].GetState(); s == connectivity.Shutdown {
		t.Fatal("b's connection closed at once, under calls that may still use it")
	}
	r.retire([]Member{{Addr: "a:1"}}, start.Add(retireGrace-time.Second))
	if s := conns["b:1"].GetState(); s == connectivity.Shutdown {
		t.Fatal("b's connection closed before the grace ended")
	}
	r.retire([]Member{{Addr: "a:1"}}, start.Add(retireGrace))
	if s := conns["b:1"].GetState(); s != connectivity.Shutdown {
		t.Fatalf("b's connection is %v after the grace, want closed", s)
	}
	if cc, err := r.conn("b:1"); err != nil || cc == conns["b:1"] {
		t.Fatalf("b came back: %v, same connection %v", err, cc == conns["b:1"])
	}
}

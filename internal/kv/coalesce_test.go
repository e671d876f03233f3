package kv

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
)

// gatedSend is a replica that answers each request n with n*10, records the
// size of every call, and holds each call until the test releases it.
type gatedSend struct {
	mu      sync.Mutex
	calls   [][]int
	started chan struct{}
	release chan struct{}
	err     error
}

func newGatedSend() *gatedSend {
	return &gatedSend{started: make(chan struct{}, 100), release: make(chan struct{}, 100)}
}

func (g *gatedSend) send(ctx context.Context, _ chord.Peer, reqs []int) ([]int, error) {
	g.mu.Lock()
	g.calls = append(g.calls, slices.Clone(reqs))
	g.mu.Unlock()
	g.started <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if g.err != nil {
		return nil, g.err
	}
	out := make([]int, len(reqs))
	for i, r := range reqs {
		out[i] = r * 10
	}
	return out, nil
}

func (g *gatedSend) callSizes() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var sizes []int
	for _, c := range g.calls {
		sizes = append(sizes, len(c))
	}
	return sizes
}

// queued waits until n callers are queued behind the calls in flight.
func queued(t *testing.T, c *coalescer[int, int], to chord.Peer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		q := c.queues[to.Addr]
		got := 0
		if q != nil {
			got = len(q.waiting)
		}
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// drained waits until every queue is gone: a drainer that outlives its
// last caller releases its slot just after.
func drained(t *testing.T, c *coalescer[int, int]) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		left := len(c.queues)
		c.mu.Unlock()
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d queues left after all calls returned", left)
		}
		time.Sleep(time.Millisecond)
	}
}

// An idle replica gets each call at once; calls made while the in-flight
// slots are taken leave together, split back to their callers in order, and
// a merged call never exceeds maxBatch requests unless one caller alone does.
func TestCoalescerMergesWhileBusy(t *testing.T) {
	g := newGatedSend()
	c := newCoalescer(1, 1, 5, time.Minute, g.send, nil)
	to := chord.NewPeer("r:1")
	type reply struct {
		id   int
		resp []int
		err  error
	}
	replies := make(chan reply, 10)
	call := func(id int, reqs ...int) {
		go func() {
			resp, err := c.call(context.Background(), to, reqs)
			replies <- reply{id, resp, err}
		}()
	}

	call(0, 1) // leaves at once: the slot is free
	<-g.started
	call(1, 2, 3)
	queued(t, c, to, 1)
	call(2, 4)
	queued(t, c, to, 2)
	call(3, 5, 6, 7) // 2+1+3 > 5: leaves in the batch after
	queued(t, c, to, 3)
	call(4, 8, 9, 10, 11, 12, 13) // alone over maxBatch: still sent, alone
	queued(t, c, to, 4)
	for range 3 { // each release lets the next batch start
		g.release <- struct{}{}
		<-g.started
	}
	g.release <- struct{}{}

	want := map[int][]int{0: {10}, 1: {20, 30}, 2: {40}, 3: {50, 60, 70}, 4: {80, 90, 100, 110, 120, 130}}
	for range want {
		r := <-replies
		if r.err != nil || !slices.Equal(r.resp, want[r.id]) {
			t.Errorf("caller %d: %v, %v; want %v", r.id, r.resp, r.err, want[r.id])
		}
	}
	if got := g.callSizes(); !slices.Equal(got, []int{1, 3, 3, 6}) {
		t.Errorf("call sizes %v, want [1 3 3 6]", got)
	}
	drained(t, c)
}

// With a call in flight and a slot free, waiting requests open a second
// call only once there are overlapKeys of them; fewer wait for the call in
// flight, so that single keys merge.
func TestCoalescerOverlapsOnlyForEnoughKeys(t *testing.T) {
	g := newGatedSend()
	c := newCoalescer(2, 3, 100, time.Minute, g.send, nil)
	to := chord.NewPeer("r:1")
	errs := make(chan error, 3)
	call := func(reqs ...int) {
		go func() {
			_, err := c.call(context.Background(), to, reqs)
			errs <- err
		}()
	}

	call(1) // the replica is idle: leaves at once
	<-g.started
	call(2) // one key waiting, under overlapKeys: waits despite the free slot
	queued(t, c, to, 1)
	select {
	case <-g.started:
		t.Fatal("a second call opened for one waiting key")
	case <-time.After(50 * time.Millisecond):
	}
	call(3, 4) // three keys waiting: a second call takes them all
	<-g.started
	if got := g.callSizes(); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("call sizes %v, want [1 3]: the second call should carry both waiting callers", got)
	}
	g.release <- struct{}{}
	g.release <- struct{}{}
	for range 3 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	drained(t, c)
}

// A failed call fails every caller merged into it; a caller whose context
// ends stops waiting without disturbing the others.
func TestCoalescerErrorsAndCancel(t *testing.T) {
	g := newGatedSend()
	g.err = errors.New("replica down")
	c := newCoalescer(1, 1, 100, time.Minute, g.send, nil)
	to := chord.NewPeer("r:1")
	errs := make(chan error, 3)
	go func() { _, err := c.call(context.Background(), to, []int{1}); errs <- err }()
	<-g.started
	cctx, cancel := context.WithCancel(context.Background())
	go func() { _, err := c.call(cctx, to, []int{2}); errs <- err }()
	go func() { _, err := c.call(context.Background(), to, []int{3}); errs <- err }()
	queued(t, c, to, 2)
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v, want context.Canceled", err)
	}
	g.release <- struct{}{}
	<-g.started
	g.release <- struct{}{}
	for range 2 {
		if err := <-errs; !errors.Is(err, g.err) {
			t.Errorf("caller: %v, want %v", err, g.err)
		}
	}
}

// With several slots, concurrent callers beyond them share calls, and every
// caller gets exactly its own answers.
func TestCoalescerConcurrentCallers(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	send := func(_ context.Context, _ chord.Peer, reqs []int) ([]int, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		time.Sleep(time.Millisecond)
		out := make([]int, len(reqs))
		for i, r := range reqs {
			out[i] = -r
		}
		return out, nil
	}
	var keysSent atomic.Int64
	c := newCoalescer(2, 1, 64, time.Minute, send, func(keys int) { keysSent.Add(int64(keys)) })
	peers := []chord.Peer{chord.NewPeer("r:1"), chord.NewPeer("r:2")}
	var wg sync.WaitGroup
	const callers = 200
	for i := range callers {
		wg.Go(func() {
			to := peers[i%2]
			resp, err := c.call(context.Background(), to, []int{i, i + 1000})
			if err != nil || !slices.Equal(resp, []int{-i, -i - 1000}) {
				t.Errorf("caller %d: %v, %v", i, resp, err)
			}
		})
	}
	wg.Wait()
	if calls > callers {
		t.Errorf("%d calls for %d callers", calls, callers)
	}
	t.Logf("%d callers made %d calls", callers, calls)
	if keysSent.Load() != 2*callers {
		t.Errorf("calls carried %d keys in all, want %d", keysSent.Load(), 2*callers)
	}
	drained(t, c)
}

// start returns at once, merges like call, and hands each answered call to
// its notify channel; idle turns true only once every call is answered.
func TestCoalescerStartNotifies(t *testing.T) {
	g := newGatedSend()
	c := newCoalescer(1, 1, 10, time.Minute, g.send, nil)
	to := chord.NewPeer("r:1")
	answered := make(chan *pendingCall[int, int], 3)
	first := c.start(to, []int{1}, answered) // leads: its batch leaves at once
	<-g.started
	second := c.start(to, []int{2, 3}, answered) // waits for the slot
	third := c.start(to, []int{4}, answered)
	queued(t, c, to, 2)
	if c.idle() {
		t.Fatal("idle with three calls outstanding")
	}
	g.release <- struct{}{}
	<-g.started // the two waiting calls leave together
	g.release <- struct{}{}
	want := map[*pendingCall[int, int]][]int{first: {10}, second: {20, 30}, third: {40}}
	for range want {
		p := <-answered
		if p.err != nil || !slices.Equal(p.resps, want[p]) {
			t.Errorf("call %v: %v, %v; want %v", p.reqs, p.resps, p.err, want[p])
		}
		if !isDone(p) {
			t.Errorf("call %v notified before done closed", p.reqs)
		}
	}
	if got := g.callSizes(); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("call sizes %v, want [1 3]", got)
	}
	if !c.idle() {
		t.Error("not idle after every call was answered")
	}
	drained(t, c)
}

package kv

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
)

// coalescer merges a coordinator's concurrent calls of one kind to the same
// replica into one call. A call leaves at once when no call to that replica
// is outstanding, or when fewer than inFlight are and at least overlapKeys
// requests are waiting; calls made meanwhile queue and leave together, as
// one batch, when a call returns. An idle node therefore
// sends every call immediately, and a loaded one pays one round trip (and
// one RPC's CPU on both sides) per batch instead of per key: under tens of
// concurrent clients a replica leg of tens of keys costs about as much as
// one.
//
// Each batch is sent under its own deadline (timeout), not under any one
// caller's context, since it carries many callers' work; a caller whose
// context ends stops waiting for it.
type coalescer[Req, Resp any] struct {
	send        func(ctx context.Context, to chord.Peer, reqs []Req) ([]Resp, error)
	inFlight    int            // calls outstanding per replica at most
	overlapKeys int            // requests waiting before a call joins one in flight
	maxBatch    int            // requests merged into one call at most
	timeout     time.Duration  // bounds each merged call
	sent        func(keys int) // hears of every call made

	// outstanding counts calls queued or in flight, from enqueue until
	// answered; see idle.
	outstanding atomic.Int64

	mu     sync.Mutex
	queues map[string]*peerQueue[Req, Resp] // by replica address
}

// peerQueue is one replica's outstanding and waiting calls.
type peerQueue[Req, Resp any] struct {
	peer     chord.Peer
	waiting  []*pendingCall[Req, Resp]
	queued   int // requests in waiting
	inFlight int
}

// pendingCall is one caller's requests and, once done is closed, its
// answers: resps[i] answers reqs[i]. A call made with start is also sent on
// notify once answered.
type pendingCall[Req, Resp any] struct {
	to     chord.Peer
	reqs   []Req
	resps  []Resp
	err    error
	done   chan struct{}
	notify chan<- *pendingCall[Req, Resp]
}

func newCoalescer[Req, Resp any](inFlight, overlapKeys, maxBatch int, timeout time.Duration,
	send func(ctx context.Context, to chord.Peer, reqs []Req) ([]Resp, error), sent func(keys int)) *coalescer[Req, Resp] {
	if sent == nil {
		sent = func(int) {}
	}
	return &coalescer[Req, Resp]{
		send: send, inFlight: max(1, inFlight), overlapKeys: max(1, overlapKeys), maxBatch: max(1, maxBatch), timeout: timeout, sent: sent,
		queues: map[string]*peerQueue[Req, Resp]{},
	}
}

// call sends reqs to the replica, merged with other callers' requests when
// calls to it are already outstanding, and returns its answers in order.
// A caller that finds no call outstanding sends on its own goroutine.
func (c *coalescer[Req, Resp]) call(ctx context.Context, to chord.Peer, reqs []Req) ([]Resp, error) {
	p := &pendingCall[Req, Resp]{to: to, reqs: reqs, done: make(chan struct{})}
	if q, lead := c.enqueue(p); lead {
		// This caller sends, on its own goroutine, batches (its own
		// among them) until its answer is in; see drain.
		c.drain(q, p)
	}
	select {
	case <-p.done:
		return p.resps, p.err
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a merged call to %s: %w", to.Addr, ctx.Err())
	}
}

// start is call without the wait, for a caller with other work to do
// meanwhile: the call goes out, merged as in call, and once it is answered
// its done channel closes and it is sent on notify, which must have room
// for it. A call that leads sends from a new goroutine, one per batch
// rather than one per caller.
func (c *coalescer[Req, Resp]) start(to chord.Peer, reqs []Req, notify chan<- *pendingCall[Req, Resp]) *pendingCall[Req, Resp] {
	p := &pendingCall[Req, Resp]{to: to, reqs: reqs, done: make(chan struct{}), notify: notify}
	if q, lead := c.enqueue(p); lead {
		go c.drain(q, nil)
	}
	return p
}

// enqueue queues p for its replica and says whether the caller must send
// (lead): when no call to the replica is outstanding, or fewer than
// inFlight are and enough requests wait.
func (c *coalescer[Req, Resp]) enqueue(p *pendingCall[Req, Resp]) (q *peerQueue[Req, Resp], lead bool) {
	c.outstanding.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	q = c.queues[p.to.Addr]
	if q == nil {
		q = &peerQueue[Req, Resp]{peer: p.to}
		c.queues[p.to.Addr] = q
	}
	q.waiting = append(q.waiting, p)
	q.queued += len(p.reqs)
	// A second call in flight halves the wait but costs a call on both
	// nodes: worth it only for enough keys.
	lead = q.inFlight == 0 || (q.inFlight < c.inFlight && q.queued >= c.overlapKeys)
	if lead {
		q.inFlight++
	}
	return q, lead
}

// idle says whether every call made so far has been answered.
func (c *coalescer[Req, Resp]) idle() bool { return c.outstanding.Load() == 0 }

// drain holds one of q's in-flight slots: it sends the waiting calls in
// batches until the queue is empty, or, when until is set, until that call
// is answered; calls still waiting then are left to a new goroutine that
// keeps the slot, so the caller returns as soon as its own answer is in.
func (c *coalescer[Req, Resp]) drain(q *peerQueue[Req, Resp], until *pendingCall[Req, Resp]) {
	for {
		c.mu.Lock()
		if len(q.waiting) == 0 {
			c.release(q)
			c.mu.Unlock()
			return
		}
		if until != nil && isDone(until) {
			c.mu.Unlock()
			go c.drain(q, nil)
			return
		}
		batch := c.take(q)
		c.mu.Unlock()
		c.sendBatch(q.peer, batch)
	}
}

// take removes the next batch from q's waiting calls: whole calls, up to
// maxBatch requests, but always at least one call. Called with c.mu held.
func (c *coalescer[Req, Resp]) take(q *peerQueue[Req, Resp]) []*pendingCall[Req, Resp] {
	n, size := 0, 0
	for n < len(q.waiting) && (n == 0 || size+len(q.waiting[n].reqs) <= c.maxBatch) {
		size += len(q.waiting[n].reqs)
		n++
	}
	batch := q.waiting[:n:n]
	q.waiting = q.waiting[n:]
	q.queued -= size
	return batch
}

// release gives back an in-flight slot, forgetting an idle replica's queue.
// Called with c.mu held.
func (c *coalescer[Req, Resp]) release(q *peerQueue[Req, Resp]) {
	q.inFlight--
	if q.inFlight == 0 && len(q.waiting) == 0 {
		delete(c.queues, q.peer.Addr)
	}
}

// sendBatch makes one call for the whole batch and hands each caller its
// share of the answers, or the call's error.
func (c *coalescer[Req, Resp]) sendBatch(to chord.Peer, batch []*pendingCall[Req, Resp]) {
	reqs := batch[0].reqs
	if len(batch) > 1 {
		reqs = nil
		for _, p := range batch {
			reqs = append(reqs, p.reqs...)
		}
	}
	c.sent(len(reqs))
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	resps, err := c.send(ctx, to, reqs)
	cancel()
	if err == nil && len(resps) != len(reqs) {
		err = fmt.Errorf("%s answered %d of %d requests", to.Addr, len(resps), len(reqs))
	}
	off := 0
	for _, p := range batch {
		if err == nil {
			p.resps = resps[off : off+len(p.reqs) : off+len(p.reqs)]
		}
		off += len(p.reqs)
		p.err = err
		close(p.done)
		if p.notify != nil {
			p.notify <- p
		}
		c.outstanding.Add(-1)
	}
}

func isDone[Req, Resp any](p *pendingCall[Req, Resp]) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

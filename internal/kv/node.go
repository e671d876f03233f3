package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// Node is one member's replication layer. It is safe for concurrent use.
type Node struct {
	cfg   Config
	ring  Ring
	local Local
	peers Peers
	clock *store.Clock
	log   *slog.Logger
	self  chord.Peer

	// synced is false from a join until the node has taken over its
	// ranges (SyncAfterJoin); until then reads it would coordinate go to
	// the successor, which still has the whole range, and its answers to
	// replica reads include the successor's copies (ReadReplica).
	synced atomic.Bool
	stats  counters
	// background counts read repairs and reads' replica calls still in
	// flight after a client got its answer; writes' replica calls are
	// counted by applies. See WaitIdle. A counter rather than a WaitGroup,
	// because requests keep arriving while a shutdown waits.
	background atomic.Int64

	// reads and applies merge concurrent coordinators' calls to the same
	// replica; see coalescer.
	reads   *coalescer[[]byte, ReadResult]
	applies *coalescer[store.Entry, struct{}]

	// grants are the read leases this node gave as a replica, lease the
	// one it holds as an owner; see lease.go. now is Config.Now (tests
	// replace it).
	grants grants
	lease  leaseState
	now    func() time.Time
}

// WaitIdle waits until replication calls that outlived their request, and
// read repairs, have finished (each is bounded by CallTimeout), or ctx ends.
// A node shutting down calls it so that a write acknowledged at quorum still
// reaches its last replica.
func (n *Node) WaitIdle(ctx context.Context) error {
	for n.background.Load() > 0 || !n.applies.idle() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d background replications and %d replica writes: %w",
				n.background.Load(), n.applies.outstanding.Load(), ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// New builds a node's replication layer. Call MarkSynced for a node that
// created the ring, or SyncAfterJoin for one that joined.
func New(cfg Config, r Ring, local Local, peers Peers, clock *store.Clock) *Node {
	cfg.withDefaults()
	self := r.Self()
	n := &Node{
		cfg: cfg, ring: r, local: local, peers: peers, clock: clock,
		log:  cfg.Logger.With("node", self.Addr),
		self: self,
		now:  cfg.Now,
	}
	n.lease.wake = make(chan struct{}, 1)
	if cfg.Restarted && cfg.ReadLease > 0 {
		n.grants.forgottenUntil = n.now().Add(cfg.ReadLease)
	}
	obs := cfg.Observer
	n.reads = newCoalescer(cfg.ReplicaCallsInFlight, cfg.ReplicaOverlapKeys, cfg.ReplicaBatchKeys, cfg.CallTimeout, peers.Read,
		func(keys int) { obs.ReplicaCallSent("read", keys) })
	n.applies = newCoalescer(cfg.ReplicaCallsInFlight, cfg.ReplicaOverlapKeys, cfg.ReplicaBatchKeys, cfg.CallTimeout,
		func(ctx context.Context, to chord.Peer, entries []store.Entry) ([]struct{}, error) {
			_, err := peers.Replicate(ctx, to, self, entries)
			return make([]struct{}, len(entries)), err
		},
		func(keys int) { obs.ReplicaCallSent("apply", keys) })
	return n
}

// Config returns the configuration, defaults filled in.
func (n *Node) Config() Config { return n.cfg }

// Get returns key's newest value among the replicas read. A missing or
// deleted key is ErrNotFound. forwarded marks a request another node already
// routed here: it is coordinated here, never forwarded again, so that nodes
// with momentarily different ring views cannot bounce it around.
func (n *Node) Get(ctx context.Context, key []byte, c Consistency, forwarded bool) (store.Entry, error) {
	r := n.get(ctx, key, c, forwarded)
	return r.Entry, r.Err
}

// Do runs one client request as Get, Put or Delete would. The result also
// names the node the request was forwarded to, so that a transport can tell
// a client that asked the wrong node where the key lives.
func (n *Node) Do(ctx context.Context, req Request, forwarded bool) Result {
	switch req.Op {
	case OpGet:
		return n.get(ctx, req.Key, req.Consistency, forwarded)
	case OpPut, OpDelete:
		if err := n.checkItem(req.Op, Item{Key: req.Key, Value: req.Value}); err != nil {
			return Result{Err: err}
		}
		if req.Op == OpDelete && len(req.Value) > 0 {
			return Result{Err: fmt.Errorf("%w: a delete carries no value", ErrInvalidArgument)}
		}
		return n.write(ctx, req, forwarded)
	}
	return Result{Err: fmt.Errorf("%w: unknown operation %d", ErrInvalidArgument, req.Op)}
}

func (n *Node) get(ctx context.Context, key []byte, c Consistency, forwarded bool) Result {
	if err := n.checkKey(key); err != nil {
		return Result{Err: err}
	}
	req := Request{Op: OpGet, Key: key, Consistency: c}
	if !forwarded {
		if r, done := n.route(ctx, req); done {
			return r
		}
	}
	if !n.synced.Load() {
		if s := n.ring.Neighbors().Successors; len(s) > 0 {
			e, err := n.peers.Forward(ctx, s[0], req)
			if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidArgument) || ctx.Err() != nil {
				return Result{Entry: e, Err: err}
			}
			// The previous owner did not answer: read the replicas here,
			// which still finds any copy the other replicas hold.
			n.log.Debug("not yet synced and the successor did not answer; reading here", "successor", s[0].Addr, "err", err)
		}
	}
	return n.coordinateRead(ctx, [][]byte{key}, c)[0]
}

// Put stores value under key and returns the version it was written with.
func (n *Node) Put(ctx context.Context, key, value []byte, c Consistency, forwarded bool) (store.Version, error) {
	r := n.Do(ctx, Request{Op: OpPut, Key: key, Value: value, Consistency: c}, forwarded)
	return r.Entry.Version, r.Err
}

// Delete writes a tombstone under key and returns its version. Deleting a
// missing key succeeds: the tombstone still orders it after older writes.
func (n *Node) Delete(ctx context.Context, key []byte, c Consistency, forwarded bool) (store.Version, error) {
	r := n.Do(ctx, Request{Op: OpDelete, Key: key, Consistency: c}, forwarded)
	return r.Entry.Version, r.Err
}

func (n *Node) checkKey(key []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: key is empty; keys are 1 to %d bytes", ErrInvalidArgument, n.cfg.MaxKeyBytes)
	}
	if len(key) > n.cfg.MaxKeyBytes {
		return fmt.Errorf("%w: key is %d bytes, the limit is %d bytes (--max-key-bytes)", ErrInvalidArgument, len(key), n.cfg.MaxKeyBytes)
	}
	return nil
}

// write coordinates a put or delete here, or routes it to the key's owner.
// The key and value are already checked.
func (n *Node) write(ctx context.Context, req Request, forwarded bool) Result {
	if !forwarded {
		if r, done := n.route(ctx, req); done {
			return r
		}
	}
	e := n.stamp(req)
	if err := n.coordinateWrite(ctx, req.Op, []store.Entry{e}, req.Consistency); err != nil {
		return Result{Err: err}
	}
	return Result{Entry: store.Entry{Key: e.Key, Version: e.Version, Tombstone: e.Tombstone}}
}

// stamp makes the entry a put or delete writes, versioned by this node,
// which coordinates it.
func (n *Node) stamp(req Request) store.Entry {
	return store.Entry{
		Key:       req.Key,
		Value:     req.Value,
		Tombstone: req.Op == OpDelete,
		Version:   store.Version{HLC: n.clock.Now(), Node: n.self.ID},
	}
}

// route sends req to the key's owner unless this node is it. done is false
// when this node should coordinate. If the owner does not answer, the next
// replicas are tried: each holds the key and can coordinate it.
func (n *Node) route(ctx context.Context, req Request) (r Result, done bool) {
	id := ring.HashKey(req.Key)
	if n.ring.Owns(id) {
		return Result{}, false
	}
	res, err := n.ring.Lookup(ctx, id)
	if err != nil {
		return Result{Err: fmt.Errorf("%w: %s: route %s: %w", ErrUnavailable, req.Op, id.Short(), err)}, true
	}
	candidates := res.Successors[:min(len(res.Successors), n.cfg.Replicas)]
	var errs []error
	for _, p := range candidates {
		if p.Addr == n.self.Addr {
			return Result{}, false
		}
		n.stats.forwarded.Add(1)
		e, err := n.peers.Forward(ctx, p, req)
		if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidArgument) {
			return Result{Entry: e, Err: err, Owner: p}, true
		}
		if ctx.Err() != nil {
			return Result{Err: err}, true
		}
		errs = append(errs, fmt.Errorf("%s: %w", p.Addr, err))
	}
	return Result{Err: fmt.Errorf("%w: %s: no replica of the key answered: %w", ErrUnavailable, req.Op, errors.Join(errs...))}, true
}

// replicaSet is the replica set of the count keys (key(i) is the i-th) this
// node is about to coordinate: replicas() when it owns all of them, else
// the owner and its r-1 successors as a lookup of the first key names them. A node
// coordinates keys it does not own when a client's router could not reach
// their owner and fell back to the next replica, or when its view is
// behind the router's; writing to its own successors instead would
// acknowledge writes that the owner and the owner's first successor, the
// replicas a later quorum read at the owner asks, may both miss. The keys
// of one request share an owner: routers group them so. owned reports
// whether this node owns every key.
func (n *Node) replicaSet(ctx context.Context, count int, key func(i int) []byte) (reps []chord.Peer, owned bool, err error) {
	owned = true
	for i := range count {
		if !n.ring.Owns(ring.HashKey(key(i))) {
			owned = false
			break
		}
	}
	if owned {
		return n.replicas(), true, nil
	}
	id := ring.HashKey(key(0))
	res, err := n.ring.Lookup(ctx, id)
	if err == nil && len(res.Successors) == 0 {
		err = errors.New("the lookup named no owner")
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: replicas of %s: %w", ErrUnavailable, id.Short(), err)
	}
	return res.Successors[:min(len(res.Successors), n.cfg.Replicas)], false, nil
}

// without returns reps without this node, and whether it was among them.
func (n *Node) without(reps []chord.Peer) (others []chord.Peer, in bool) {
	others = make([]chord.Peer, 0, len(reps))
	for _, p := range reps {
		if p.Addr == n.self.Addr {
			in = true
			continue
		}
		others = append(others, p)
	}
	return others, in
}

// replicas is this node followed by its first r-1 successors: the replica
// set of every key it owns.
func (n *Node) replicas() []chord.Peer {
	succs := n.ring.Neighbors().Successors
	out := make([]chord.Peer, 0, n.cfg.Replicas)
	out = append(out, n.self)
	for _, p := range succs {
		if len(out) == n.cfg.Replicas {
			break
		}
		if p.Addr != n.self.Addr {
			out = append(out, p)
		}
	}
	return out
}

// ApplyLocal merges entries into this node's store, last writer wins, and
// moves the clock past every version seen so that this node's next write of
// the same key is newer than anything it has stored. It is the path of
// repair traffic (take-over, hand-off, anti-entropy, read repair), which
// does not fill the store's key cache; clients' writes take ApplyFrom and
// startLocal.
func (n *Node) ApplyLocal(entries []store.Entry) (int, error) {
	return waited(n.startMoved(entries))
}

// waited is the result of a write begun with applied, wait and err, once
// it is durable: applied, or the first error.
func waited(applied int, wait func() error, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	if err := wait(); err != nil {
		return 0, err
	}
	return applied, nil
}

// startMoved is ApplyLocal up to the store's write: it returns the number
// of entries applied, and a wait that returns once they are durable (its
// error says which write failed to sync), to be called exactly once.
func (n *Node) startMoved(entries []store.Entry) (applied int, wait func() error, err error) {
	n.observe(entries)
	won, wait, err := n.local.ApplyUncached(entries...)
	if err != nil {
		return 0, nil, fmt.Errorf("apply %d entries: %w", len(entries), err)
	}
	return countApplied(won), wait, nil
}

// countApplied is how many entries a store's Apply found newer than what
// it held.
func countApplied(applied []bool) int {
	count := 0
	for _, a := range applied {
		if a {
			count++
		}
	}
	return count
}

// startLocal is ApplyLocal for a coordinator: it returns once the entries
// are written, with the store's wait, which returns once they are durable
// (its error already says which write failed to sync).
func (n *Node) startLocal(entries []store.Entry) (wait func() error, err error) {
	n.observe(entries)
	_, wait, err = n.local.ApplyAsync(entries...)
	if err != nil {
		return nil, fmt.Errorf("apply %d entries: %w", len(entries), err)
	}
	return wait, nil
}

// observe moves the clock past every version in entries, so that this
// node's next write of the same key is newer than anything it has stored.
func (n *Node) observe(entries []store.Entry) {
	for _, e := range entries {
		if err := n.clock.Observe(e.Version.HLC); err != nil {
			n.log.Warn("a peer's clock is far ahead of ours", "version", e.Version, "err", err)
		}
	}
}

// ReadReplica is a replica's answer to a read of keys by a coordinator or a
// repair: results[i] answers keys[i], tombstones included. With budget
// above 0 it answers a prefix of keys, the longest (at least one key) whose
// values fit in budget bytes, so that a request for many large values is
// read a part at a time, not held in memory whole.
//
// A node still taking over its ranges after a join (SyncAfterJoin) does not
// answer from its store alone: it also reads its successor's copies and
// answers each key's newer entry. Right behind an owner, a joiner is the
// first replica the owner's quorum reads ask, and until it has pulled the
// owner's range its store counts as "not found"; had the owner missed a
// write its successors acknowledged, the read would miss it. The successor
// belongs to the previous replica set of every range the joiner now holds,
// so the two copies together answer for the replicas the joiner replaced
// (TestKVReadDuringAJoinersTakeOver). If the successor does not answer, the
// read fails Unavailable and the coordinator asks its next replica.
// storedOnly asks for this node's store alone: the successor's own answer
// to such a read, so that reads between joiners go one hop, not round the
// ring.
func (n *Node) ReadReplica(ctx context.Context, keys [][]byte, storedOnly bool, budget int) ([]ReadResult, error) {
	for _, key := range keys {
		if err := n.checkKey(key); err != nil {
			return nil, err
		}
	}
	out := make([]ReadResult, 0, len(keys))
	size := 0
	for _, key := range keys {
		e, found, err := n.local.Get(key)
		if err != nil {
			return nil, err
		}
		if budget > 0 && size > 0 && size+len(e.Value) > budget {
			break
		}
		size += len(e.Value)
		out = append(out, ReadResult{Entry: e, Found: found})
	}
	keys = keys[:len(out)]
	if storedOnly || n.synced.Load() {
		return out, nil
	}
	succ := n.ring.Neighbors().Successors
	if len(succ) == 0 || succ[0].Addr == n.self.Addr {
		return out, nil
	}
	theirs, err := n.peers.ReadStored(ctx, succ[0], keys)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is still taking over its ranges after joining and its successor %s did not answer: %w",
			ErrUnavailable, n.self.Addr, succ[0].Addr, err)
	}
	n.stats.takeOverReads.Add(int64(len(keys)))
	for i, t := range theirs {
		if t.Found && (!out[i].Found || t.Entry.Version.After(out[i].Entry.Version)) {
			out[i] = t
		}
	}
	return out, nil
}

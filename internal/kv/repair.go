package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// digestWireBytes is what one bucket digest costs on the wire (bucket
// number and 64-bit digest, with protobuf framing), for the in-sync cost
// the benchmarks report.
const digestWireBytes = 14

// A range push sends at most this many entries or bytes per Apply call.
const (
	pushBatchBytes   = 1 << 20
	pushBatchEntries = 512
)

type counters struct {
	forwarded     atomic.Int64
	readRepairs   atomic.Int64
	syncRounds    atomic.Int64
	digestBytes   atomic.Int64
	pulled        atomic.Int64
	pushed        atomic.Int64
	handoffPushed atomic.Int64
	leaseReads    atomic.Int64
	takeOverReads atomic.Int64
}

// Stats are cumulative counters of the replication layer, for metrics and
// benchmarks.
type Stats struct {
	Forwarded   int64 // requests sent on to the owner or another replica
	ReadRepairs int64 // stale replicas repaired by reads
	SyncRounds  int64 // range comparisons with one replica
	DigestBytes int64 // digest bytes received in those comparisons
	Pulled      int64 // entries received from replicas that were newer here
	Pushed      int64 // entries sent to replicas in differing buckets
	HandedOff   int64 // entries sent to successors when leaving
	LeaseReads  int64 // quorum reads answered alone under a read lease
	// TakeOverReads counts keys read from the successor too, because this
	// node was still taking over its ranges after a join (ReadReplica).
	TakeOverReads int64
}

// Stats returns the counters so far.
func (n *Node) Stats() Stats {
	return Stats{
		Forwarded:   n.stats.forwarded.Load(),
		ReadRepairs: n.stats.readRepairs.Load(),
		SyncRounds:  n.stats.syncRounds.Load(),
		DigestBytes: n.stats.digestBytes.Load(),
		Pulled:      n.stats.pulled.Load(),
		Pushed:      n.stats.pushed.Load(),
		HandedOff:   n.stats.handoffPushed.Load(),
		LeaseReads:  n.stats.leaseReads.Load(),

		TakeOverReads: n.stats.takeOverReads.Load(),
	}
}

// MarkSynced lets the node serve reads it coordinates from its own store:
// it created the ring, or has pulled its range.
func (n *Node) MarkSynced() { n.synced.Store(true) }

// Synced reports whether the node serves the reads it coordinates itself.
func (n *Node) Synced() bool { return n.synced.Load() }

// SyncAfterJoin takes over a joining node's ranges before it serves reads for
// them: it waits (up to JoinSyncTimeout) to learn its predecessor and r-1
// successors (knowsReplicaSets), then pulls
// (predecessor, self] from its successor, the range's previous owner, and
// compares it key by key with the next r-1 successors, the rest of the
// range's previous replica set. Then it pulls each range it now replicates
// for a predecessor from the node it displaced from that range's replica
// set: the range of its i-th predecessor (i < r), (P_{i+1}, P_i], from its
// successor r-1-i (HandOff's mirror image). Writes are served meanwhile;
// they reach the successor too, which stays a replica. Replica reads are
// answered meanwhile with the successor's copies too (ReadReplica).
//
// The previous owner alone is not enough: a write acknowledged by the two
// replicas after it, its own copy lost, would be missing here, and after a
// second join in front of this node it would sit only on the fourth and
// fifth nodes in line, where no quorum read looks, until their cleanup moved
// it. And without the predecessors' ranges, a node joining right behind an
// owner that missed a write becomes the replica the owner's quorum reads
// ask, holding nothing (both: TestKVMembershipChangeKeepsAWriteTheOwnerMissed).
//
// A take-over that fails part-way (a replica did not answer) is tried again,
// on the neighbours known then, until JoinSyncTimeout; reads the node would
// coordinate keep going to its successor meanwhile.
func (n *Node) SyncAfterJoin(ctx context.Context) error {
	defer n.MarkSynced()
	deadline := time.Now().Add(n.cfg.JoinSyncTimeout)
	wait := 50 * time.Millisecond
	for {
		nb := n.ring.Neighbors()
		var err error
		if n.knowsReplicaSets(nb) {
			if err = n.takeOver(ctx, nb); err == nil {
				return nil
			}
			wait = min(2*wait, time.Second)
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("%w; serving reads all the same after %s, anti-entropy will catch up", err, n.cfg.JoinSyncTimeout)
			}
			return fmt.Errorf("sync after join: no predecessor, or fewer than %d successors, after %s; serving reads without a pull, anti-entropy will catch up", n.cfg.Replicas-1, n.cfg.JoinSyncTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// knowsReplicaSets reports whether nb names every node a take-over reads
// from: the predecessor, and r-1 successors or, in a ring of at most r
// nodes, all of them (the list reaches round to the predecessor). A join
// adopts its successor's list, so this normally holds at once; but with a
// shorter list a take-over would skip the predecessors' ranges, which come
// from successors 1 to r-2 (replicaMoves), and still report success.
//
// A successor list holds distinct nodes and stops before this node, so a
// predecessor on it must be its last entry; anywhere else the view is
// not yet consistent, and the take-over waits for the next round. A node
// joining a ring whose nodes had started a second before (still joining
// each other) was seen with its successor as its predecessor for a few
// milliseconds: a take-over from that view would pull from its successor
// the arc (successor, self], nearly the whole ring.
func (n *Node) knowsReplicaSets(nb chord.Neighbors) bool {
	if nb.Predecessor.IsZero() || len(nb.Successors) == 0 {
		return false
	}
	at := slices.IndexFunc(nb.Successors, func(p chord.Peer) bool { return p.Addr == nb.Predecessor.Addr })
	if at < 0 {
		return len(nb.Successors) >= n.cfg.Replicas-1
	}
	return at == len(nb.Successors)-1
}

// takeOver is SyncAfterJoin's work once the node knows its neighbours.
func (n *Node) takeOver(ctx context.Context, nb chord.Neighbors) error {
	r := n.cfg.Replicas
	previous := nb.Successors[:min(len(nb.Successors), r)]
	if _, err := n.syncRange(ctx, previous[0], nb.Predecessor.ID, n.self.ID, pullAll); err != nil {
		return fmt.Errorf("sync after join: %w", err)
	}
	var errs []error
	for _, p := range previous[1:] {
		if _, err := n.syncRange(ctx, p, nb.Predecessor.ID, n.self.ID, exchange); err != nil {
			errs = append(errs, err)
		}
	}
	moves, err := n.replicaMoves(ctx, nb)
	if err != nil {
		errs = append(errs, err)
	}
	for _, m := range moves {
		buckets, err := n.syncRange(ctx, m.peer, m.from, m.owner.ID, pullAll)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s's range from %s: %w", m.owner.Addr, m.peer.Addr, err))
		}
		n.log.Debug("pulled a predecessor's range", "owner", m.owner.Addr, "from", m.peer.Addr, "buckets", buckets)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sync after join: pulled (%s, %s] from %s, but not everything else: %w",
			nb.Predecessor.ID.Short(), n.self.ID.Short(), previous[0].Addr, err)
	}
	n.log.Info("took over ranges from their previous replicas", "successor", previous[0].Addr, "from", nb.Predecessor.Addr)
	return nil
}

// AntiEntropy is one repair round for this node's primary range
// (predecessor, self]: against each of its r-1 successors it compares bucket
// digests, then the differing buckets key by key, and moves each differing
// key's newer entry to the side that lacks it, both ways; keys written less
// than RepairSettle ago are left to the write path. After a crash the node
// whose range grew to cover the dead node's keys re-creates their missing
// replicas here. It returns how many replicas it compared. A node still
// taking over its ranges after a join skips the round.
func (n *Node) AntiEntropy(ctx context.Context) (int, error) {
	nb := n.ring.Neighbors()
	if !n.ring.IsMember() || nb.Predecessor.IsZero() {
		return 0, nil
	}
	if !n.synced.Load() {
		return 0, nil // the take-over after the join moves the same entries
	}
	targets := nb.Successors[:min(len(nb.Successors), n.cfg.Replicas-1)]
	return n.syncWith(ctx, targets, nb.Predecessor.ID, exchangeSettled)
}

// DeclineRepair is a replica's answer to periodic repair's requests
// (anti-entropy, cleanup) before it serves them: ErrUnavailable while it is
// still taking over its ranges after a join, whose pulls move the same
// entries (a repair round would push a displaced range to it a second time,
// on top of its own pull); nil once it has.
func (n *Node) DeclineRepair() error {
	if n.synced.Load() {
		return nil
	}
	return fmt.Errorf("%w: %s is still taking over its ranges after joining; repair it in a later round", ErrUnavailable, n.self.Addr)
}

// HandOff is what a node does before leaving gracefully: it gives every
// range it replicates to the node that takes its place in that range's
// replica set. Its primary range goes to its first r successors, the range's
// replica set once it is gone; each range it replicates for a predecessor
// goes to that range's new last replica (replicaMoves). Without the second
// part a write acknowledged by this node and one other replica, the owner's
// copy lost, would keep a single copy after this node left, and none after
// the other replica left too, before the owner's anti-entropy had copied it
// (TestKVMembershipChangeKeepsAWriteTheOwnerMissed). Every transfer is a
// key-level exchange that moves nothing the target already has. It returns
// how many replicas it compared.
func (n *Node) HandOff(ctx context.Context) (int, error) {
	nb := n.ring.Neighbors()
	if nb.Predecessor.IsZero() || len(nb.Successors) == 0 {
		return 0, nil
	}
	before := n.stats.pushed.Load()
	defer func() { n.stats.handoffPushed.Add(n.stats.pushed.Load() - before) }()
	r := n.cfg.Replicas
	targets := nb.Successors[:min(len(nb.Successors), r)]
	done, err := n.syncWith(ctx, targets, nb.Predecessor.ID, exchange)
	errs := []error{err}
	moves, err := n.replicaMoves(ctx, nb)
	errs = append(errs, err)
	for _, m := range moves {
		if _, err := n.syncRange(ctx, m.peer, m.from, m.owner.ID, exchange); err != nil {
			errs = append(errs, fmt.Errorf("hand %s's range to %s: %w", m.owner.Addr, m.peer.Addr, err))
			continue
		}
		done++
	}
	return done, errors.Join(errs...)
}

// replicaMove is a range this node replicates for a predecessor, owner's
// (from, owner], and peer, the node whose place in its replica set this node
// takes when it joins, or that takes this node's place when it leaves.
type replicaMove struct {
	from  ring.ID
	owner chord.Peer
	peer  chord.Peer
}

// replicaMoves lists the ranges this node replicates for its predecessors:
// for its i-th predecessor P_i (0 < i < r), the range (P_{i+1}, P_i], whose
// replica set is P_i, ..., P_1, this node and its first r-1-i successors.
// Its successor r-1-i is just past the set's end: a join of this node pushed
// that node out of the set, and a leave of this node brings it back in. A
// ring of at most r nodes has none to move: every node replicates everything.
func (n *Node) replicaMoves(ctx context.Context, nb chord.Neighbors) ([]replicaMove, error) {
	r := n.cfg.Replicas
	preds, err := n.ring.Predecessors(ctx, r)
	var moves []replicaMove
	for i := 1; i < r && i < len(preds) && r-1-i < len(nb.Successors); i++ {
		peer := nb.Successors[r-1-i]
		if peer.Addr == preds[i-1].Addr {
			continue // the walk wrapped round: the owner itself
		}
		moves = append(moves, replicaMove{from: preds[i].ID, owner: preds[i-1], peer: peer})
	}
	n.log.Debug("ranges replicated for predecessors", "predecessors", chord.Addrs(preds), "successors", chord.Addrs(nb.Successors), "moves", len(moves), "err", err)
	return moves, err
}

func (n *Node) syncWith(ctx context.Context, targets []chord.Peer, from ring.ID, mode syncMode) (int, error) {
	var errs []error
	done := 0
	for _, t := range targets {
		if t.Addr == n.self.Addr {
			continue
		}
		if _, err := n.syncRange(ctx, t, from, n.self.ID, mode); err != nil {
			errs = append(errs, err)
			continue
		}
		done++
	}
	return done, errors.Join(errs...)
}

// A syncMode is how syncRange settles the buckets in which two replicas'
// digests differ.
type syncMode int

const (
	// pullAll takes the peer's entries of every differing bucket: a
	// joining node's pull, which starts with little of the range.
	pullAll syncMode = iota
	// exchange compares the differing buckets key by key and moves, in
	// whichever direction, only the newer entry of each key that differs:
	// hand-off.
	exchange
	// exchangeSettled is exchange that leaves alone the keys whose newer
	// version is younger than RepairSettle: periodic anti-entropy.
	exchangeSettled
	// pullNewer is exchange in one direction: it takes the peer's newer
	// entries and sends none. A read lease's catch-up needs only this
	// node's store complete; the peer's copy is anti-entropy's business,
	// and a joiner that is still pulling its ranges would otherwise be
	// sent keys it is about to pull.
	pullNewer
)

// exchangeBuckets bounds the differing buckets compared in one Versions
// call, so that the peer's versions held in memory stay a small part of a
// range however much of it differs.
const exchangeBuckets = 16

// syncRange makes this node and peer agree on (a, b]: digests first, then,
// for the differing buckets, what mode says. It returns the number of
// differing buckets.
func (n *Node) syncRange(ctx context.Context, peer chord.Peer, a, b ring.ID, mode syncMode) (int, error) {
	// Versions above horizon are too young to move (0: none are). Writes
	// still in flight between the two replicas make their buckets' plain
	// digests differ; settled digests leave those writes out, so that
	// under a write load only buckets that disagree on older entries are
	// compared key by key.
	var horizon uint64
	if mode == exchangeSettled && n.cfg.RepairSettle > 0 {
		horizon = store.HLCAt(store.HLCTime(n.clock.Now()).Add(-n.cfg.RepairSettle))
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.CallTimeout)
	theirs, err := n.peers.Digests(cctx, peer, a, b, horizon, mode == exchangeSettled)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("digests from %s: %w", peer.Addr, err)
	}
	n.stats.syncRounds.Add(1)
	n.stats.digestBytes.Add(int64(len(theirs) * digestWireBytes))
	mine, err := n.local.SettledDigests(a, b, horizon)
	if err != nil {
		return 0, err
	}
	diff := differingBuckets(mine, theirs)
	if len(diff) == 0 {
		return 0, nil
	}
	// A pull can move a whole range, so it gets a deadline per bucket.
	cctx, cancel = context.WithTimeout(ctx, n.cfg.CallTimeout*time.Duration(1+len(diff)))
	defer cancel()
	if mode == pullAll {
		// A batch's fsync overlaps the receipt of the next: the node
		// waits for a batch to be durable only when the next has arrived,
		// and for the last before it returns. It waits before writing the
		// next, not after: a write still waiting for its sync holds off
		// the store's Close, and Close, once waiting, holds off new
		// writes, so a second write begun meanwhile would never end.
		var syncing func() error
		err = n.peers.Fetch(cctx, peer, a, b, diff, func(batch []store.Entry) error {
			if syncing != nil {
				wait := syncing
				syncing = nil
				if err := wait(); err != nil {
					return err
				}
			}
			_, wait, err := n.startPulled(batch)
			if err != nil {
				return err
			}
			syncing = wait
			return nil
		})
		if syncing != nil {
			if serr := syncing(); err == nil {
				err = serr
			}
		}
		if err != nil {
			return len(diff), fmt.Errorf("pull %d buckets from %s: %w", len(diff), peer.Addr, err)
		}
		return len(diff), nil
	}
	for start := 0; start < len(diff); start += exchangeBuckets {
		group := diff[start:min(len(diff), start+exchangeBuckets)]
		if err := n.exchangeKeys(cctx, peer, a, b, group, horizon, mode != pullNewer); err != nil {
			return len(diff), err
		}
	}
	n.log.Debug("repaired range", "peer", peer.Addr, "buckets", len(diff))
	return len(diff), nil
}

// exchangeKeys compares buckets of (a, b] with peer key by key, from the
// peer's versions and this node's entries, and moves each differing key's
// newer entry to the side that lacks it (to the peer only if push is set),
// unless the newer version is above horizon (when horizon is not 0). Keys
// in sync cost their key and version on the wire; no value moves for them.
func (n *Node) exchangeKeys(ctx context.Context, peer chord.Peer, a, b ring.ID, buckets []int, horizon uint64, push bool) error {
	theirs := map[string]store.Version{}
	err := n.peers.Versions(ctx, peer, a, b, buckets, func(batch []store.Entry) error {
		for _, e := range batch {
			theirs[string(e.Key)] = e.Version
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("versions of %d buckets from %s: %w", len(buckets), peer.Addr, err)
	}
	settled := func(v store.Version) bool { return horizon == 0 || v.HLC <= horizon }
	var pull [][]byte
	pushed := pushBatch{n: n, peer: peer}
	for _, bk := range buckets {
		var pushErr error
		err := n.local.BucketEntries(bk, a, b, func(e store.Entry) bool {
			v, ok := theirs[string(e.Key)]
			delete(theirs, string(e.Key))
			switch {
			case ok && v == e.Version:
			case ok && v.After(e.Version):
				if settled(v) {
					pull = append(pull, e.Key)
				}
			case push && settled(e.Version):
				pushErr = pushed.add(ctx, e)
			}
			return pushErr == nil
		})
		if pushErr != nil {
			return pushErr
		}
		if err != nil {
			return err
		}
	}
	if err := pushed.flush(ctx); err != nil {
		return err
	}
	for k, v := range theirs {
		if settled(v) {
			pull = append(pull, []byte(k))
		}
	}
	slices.SortFunc(pull, bytes.Compare) // map order must not leak into a seeded simulation
	for len(pull) > 0 {
		chunk := pull[:min(len(pull), pushBatchEntries)]
		pull = pull[len(chunk):]
		reads, err := n.peers.Read(ctx, peer, chunk)
		if err != nil {
			return fmt.Errorf("pull %d keys from %s: %w", len(chunk), peer.Addr, err)
		}
		var got []store.Entry
		for _, r := range reads {
			if r.Found {
				got = append(got, r.Entry)
			}
		}
		if _, err := n.applyPulled(got); err != nil {
			return fmt.Errorf("pull %d keys from %s: %w", len(chunk), peer.Addr, err)
		}
	}
	return nil
}

// applyPulled stores entries received from a replica and counts those that
// were newer here.
func (n *Node) applyPulled(entries []store.Entry) (int, error) {
	return waited(n.startPulled(entries))
}

// startPulled is applyPulled up to the store's write: the entries are
// written and visible when it returns, and durable once wait returns nil;
// wait must be called exactly once.
func (n *Node) startPulled(entries []store.Entry) (applied int, wait func() error, err error) {
	if len(entries) == 0 {
		return 0, func() error { return nil }, nil
	}
	applied, wait, err = n.startMoved(entries)
	if err != nil {
		return 0, nil, err
	}
	n.stats.pulled.Add(int64(applied))
	if applied > 0 {
		n.cfg.Observer.EntriesHandedOff(DirectionIn, applied)
	}
	return applied, wait, nil
}

// pushBatch sends entries to a replica in Apply calls of at most
// pushBatchEntries entries or about pushBatchBytes bytes.
type pushBatch struct {
	n       *Node
	peer    chord.Peer
	entries []store.Entry
	size    int
}

func (p *pushBatch) add(ctx context.Context, e store.Entry) error {
	p.entries = append(p.entries, e)
	p.size += len(e.Key) + len(e.Value)
	if p.size >= pushBatchBytes || len(p.entries) >= pushBatchEntries {
		return p.flush(ctx)
	}
	return nil
}

func (p *pushBatch) flush(ctx context.Context) error {
	if len(p.entries) == 0 {
		return nil
	}
	if _, err := p.n.peers.Apply(ctx, p.peer, p.entries); err != nil {
		return fmt.Errorf("push %d entries to %s: %w", len(p.entries), p.peer.Addr, err)
	}
	p.n.stats.pushed.Add(int64(len(p.entries)))
	p.n.cfg.Observer.EntriesHandedOff(DirectionOut, len(p.entries))
	p.entries, p.size = p.entries[:0], 0
	return nil
}

// differingBuckets lists the buckets whose digests differ, or that only one
// side reported.
func differingBuckets(mine, theirs []store.BucketDigest) []int {
	theirsByBucket := make(map[int]uint64, len(theirs))
	for _, d := range theirs {
		theirsByBucket[d.Bucket] = d.Digest
	}
	var diff []int
	for _, d := range mine {
		if t, ok := theirsByBucket[d.Bucket]; !ok || t != d.Digest {
			diff = append(diff, d.Bucket)
		}
		delete(theirsByBucket, d.Bucket)
	}
	for bk := range theirsByBucket {
		diff = append(diff, bk)
	}
	slices.Sort(diff) // map order must not leak into a seeded simulation
	return diff
}

// CollectGarbage drops tombstones older than TombstoneGrace.
func (n *Node) CollectGarbage(now time.Time) (int, error) {
	return n.local.CollectTombstones(now.Add(-n.cfg.TombstoneGrace))
}

// Run drives anti-entropy, tombstone collection and, with ReadLease set,
// the read lease's renewal until ctx ends.
func (n *Node) Run(ctx context.Context) {
	ae := time.NewTicker(n.cfg.AntiEntropyInterval)
	gc := time.NewTicker(max(n.cfg.TombstoneGrace/10, time.Minute))
	defer ae.Stop()
	defer gc.Stop()
	if n.cfg.ReadLease > 0 {
		// On its own goroutine: a long anti-entropy round must not let
		// the lease lapse.
		done := make(chan struct{})
		defer func() { <-done }()
		go func() {
			defer close(done)
			n.renewLeases(ctx)
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ae.C:
			if _, err := n.AntiEntropy(ctx); err != nil && ctx.Err() == nil {
				n.log.Debug("anti-entropy round incomplete", "err", err)
			}
			if _, err := n.Cleanup(ctx); err != nil && ctx.Err() == nil {
				n.log.Debug("cleanup round incomplete", "err", err)
			}
		case now := <-gc.C:
			if k, err := n.CollectGarbage(now); err != nil {
				n.log.Warn("tombstone collection failed", "err", err)
			} else if k > 0 {
				n.log.Info("collected tombstones", "count", k)
			}
		}
	}
}

package kv

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/store"
)

// answer is one replica's reply to a coordinator: for a read, its copy of
// each key (reads[i] for the i-th key).
type answer struct {
	peer  chord.Peer
	reads []ReadResult
	err   error
}

// gather calls the first eager replicas at once, and one more for each that
// fails, and returns as soon as need of them succeeded, or as soon as too
// many failed for that to happen. Reads that need more than one replica
// besides the coordinator use it (readFromOne serves the commonest read):
// they call only as many as they need and reach further replicas only on
// failures. The calls run on a context detached from the client's (bounded
// by CallTimeout), so they finish after the client has its answer; then
// every answer, late ones included, goes to after (read repair), if set.
func (n *Node) gather(ctx context.Context, op Op, reps []chord.Peer, need, eager int,
	call func(context.Context, chord.Peer) answer, after func([]answer)) ([]answer, error) {
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.CallTimeout)
	answers := make(chan answer, len(reps))
	called := 0
	callNext := func() {
		p := reps[called]
		called++
		go func() { answers <- call(bg, p) }()
	}
	for called < min(eager, len(reps)) {
		callNext()
	}
	var got []answer
	var errs []error
	ok := 0
	var err error
	for ok < need && err == nil {
		select {
		case a := <-answers:
			got = append(got, a)
			if a.err == nil {
				ok++
				continue
			}
			errs = append(errs, fmt.Errorf("%s: %w", a.peer.Addr, a.err))
			if len(reps)-len(errs) < need {
				err = fmt.Errorf("%w: %s: %d of the %d replicas required answered: %w", ErrUnavailable, op, ok, need, errors.Join(errs...))
			} else if called < len(reps) {
				callNext()
			}
		case <-ctx.Done():
			err = fmt.Errorf("%s: %d of the %d replicas required answered in time: %w", op, ok, need, ctx.Err())
		}
	}
	early := slices.Clone(got)
	outstanding := called - len(early)
	n.background.Add(1)
	go func() {
		defer n.background.Add(-1)
		defer cancel()
		all := early
		for range outstanding {
			all = append(all, <-answers)
		}
		if after != nil {
			after(all)
		}
	}()
	return got, err
}

// coordinateWrite sends entries, all of keys this node owns, to every
// replica and returns once the consistency level's count stored them
// durably; the rest keep replicating in the background (see WaitIdle), so a
// write acknowledged at quorum normally reaches all r. A batch shares one
// local write (one fsync) and one call per replica, and calls to the same
// replica from concurrent requests are merged (see coalescer). The local
// write runs on the request's goroutine while the replicas' calls are in
// flight, and those calls start no goroutine per request: under load most
// join a batch that a goroutine started for the batch sends. A goroutine
// per replica call, and one for the late answers, cost about 12% of a
// saturated 3-node ring's CPU per put, mostly in waking threads to run
// them (docs/benchmarks.md). The local fsync is confirmed last (see below);
// until then the store holds the write open, so this waits at most the
// request's deadline or the replica calls' timeout.
func (n *Node) coordinateWrite(ctx context.Context, op Op, entries []store.Entry, c Consistency) error {
	reps, _, err := n.replicaSet(ctx, len(entries), func(i int) []byte { return entries[i].Key })
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	need := required(c, n.cfg.Replicas, len(reps))
	answered := make(chan *pendingCall[store.Entry, struct{}], len(reps))
	// A node that leased a range holding one of the keys to another node
	// does not coordinate the write at all: its own replica set is not the
	// holder's (a replica coordinating for an owner it could not reach
	// would write to its own successors), so the write could be
	// acknowledged without the holder. The check holds until the local
	// copy is written, so that a grant given meanwhile finds the copy here
	// when its holder catches up.
	n.grants.mu.RLock()
	if err := n.checkGrants(n.self.Addr, entries); err != nil {
		n.grants.mu.RUnlock()
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	local := false
	for _, p := range reps {
		if p.Addr == n.self.Addr && !local {
			local = true
			continue
		}
		n.applies.start(p, entries, answered)
	}
	var errs []error
	var localWait func() error // set while the local write's fsync is unconfirmed
	if local {
		var err error
		if localWait, err = n.startLocal(entries); err != nil {
			n.invalidateLease()
			errs = append(errs, fmt.Errorf("%s: %w", n.self.Addr, err))
		}
	}
	n.grants.mu.RUnlock()
	defer func() {
		// Every write's wait must run, even when the request fails
		// first: until it does, the store cannot close.
		if localWait != nil {
			_ = localWait()
		}
	}()
	// The replicas' answers are awaited first and the local fsync last:
	// it usually ends first, so confirming it then costs no second wait.
	remoteOK := 0
	for {
		want := need
		if localWait != nil {
			want--
		}
		if remoteOK >= want {
			if localWait == nil {
				return nil
			}
			err := localWait()
			localWait = nil
			if err == nil {
				return nil
			}
			n.invalidateLease()
			errs = append(errs, fmt.Errorf("%s: %w", n.self.Addr, err))
			continue
		}
		if len(reps)-len(errs) < need {
			return fmt.Errorf("%w: %s: %d of the %d replicas required answered: %w", ErrUnavailable, op, remoteOK, need, errors.Join(errs...))
		}
		select {
		case a := <-answered:
			if a.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", a.to.Addr, a.err))
				continue
			}
			remoteOK++
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of the %d replicas required answered in time: %w", op, remoteOK, need, ctx.Err())
		}
	}
}

// coordinateRead reads keys, all owned by this node, from the consistency
// level's count of replicas and returns, per key, the newest entry among
// them; a missing key or a tombstone is ErrNotFound. The coordinator's own
// replica is always one of them: it is the owner, and since replica sets
// are runs of successors the owner held a replica before any crash made it
// owner. Without that, right after two of three replicas crash, two fresh
// replicas could answer "not found" first. Only as many other replicas as
// the level needs are read (more only if some fail); those found stale,
// including ones that answer after the client has its reply, are repaired
// with the newest entry, and anti-entropy repairs the rest.
func (n *Node) coordinateRead(ctx context.Context, keys [][]byte, c Consistency) []Result {
	results := make([]Result, len(keys))
	fail := func(err error) []Result {
		for i := range results {
			results[i].Err = err
		}
		return results
	}
	reps, owned, err := n.replicaSet(ctx, len(keys), func(i int) []byte { return keys[i] })
	if err != nil {
		return fail(fmt.Errorf("%s: %w", OpGet, err))
	}
	others, selfIn := n.without(reps)
	need := required(c, n.cfg.Replicas, len(reps))
	if selfIn {
		need-- // the local copy is one of them
	}
	// The lease must be in force when the local copy is read, not only
	// after: a lease caught up in between may hold writes the copy lacks.
	if owned && selfIn && need == 1 && c != All && n.readsAlone(keys, others) {
		need = 0 // the read lease stands for the second replica
		n.stats.leaseReads.Add(1)
	}
	local := answer{peer: n.self, reads: make([]ReadResult, len(keys))}
	for i, k := range keys {
		e, found, err := n.local.Get(k)
		if err != nil {
			return fail(fmt.Errorf("get: local replica: %w", err))
		}
		local.reads[i] = ReadResult{Entry: e, Found: found}
	}
	var got []answer
	switch {
	case need == 0:
	case need == 1 && selfIn:
		got, err = n.readFromOne(ctx, keys, others, local)
	default:
		got, err = n.gather(ctx, OpGet, others, need, need, func(ctx context.Context, p chord.Peer) answer {
			reads, err := n.reads.call(ctx, p, keys)
			return answer{peer: p, reads: reads, err: err}
		}, func(all []answer) {
			if selfIn {
				all = append(all, local)
			}
			n.readRepair(keys, all)
		})
	}
	if err != nil {
		return fail(fmt.Errorf("%w (counting replicas besides the coordinator)", err))
	}
	if selfIn {
		got = append(got, local)
	}
	for i := range keys {
		newest, found := newestOf(got, i)
		if !found || newest.Tombstone {
			results[i].Err = ErrNotFound
			continue
		}
		results[i].Entry = newest
	}
	return results
}

// readFromOne is gather for the commonest read, a quorum at r = 3, which
// needs one replica besides the coordinator: it asks the others one at a
// time on the caller's goroutine until one answers, so the read costs no
// goroutine and no detached context. Each call is bounded by CallTimeout
// (see coalescer). If the answer and the local copy differ, the stale one
// is repaired in the background.
func (n *Node) readFromOne(ctx context.Context, keys [][]byte, others []chord.Peer, local answer) ([]answer, error) {
	var errs []error
	for _, p := range others {
		reads, err := n.reads.call(ctx, p, keys)
		if err == nil {
			a := answer{peer: p, reads: reads}
			if differ(a, local) {
				n.background.Add(1)
				go func() {
					defer n.background.Add(-1)
					n.readRepair(keys, []answer{a, local})
				}()
			}
			return []answer{a}, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", p.Addr, err))
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: 0 of the 1 replicas required answered in time: %w", OpGet, errors.Join(errs...))
		}
	}
	return nil, fmt.Errorf("%w: %s: 0 of the 1 replicas required answered: %w", ErrUnavailable, OpGet, errors.Join(errs...))
}

// differ tells whether two replicas' answers disagree on any key.
func differ(a, b answer) bool {
	for i := range a.reads {
		x, y := a.reads[i], b.reads[i]
		if x.Found != y.Found || (x.Found && x.Entry.Version != y.Entry.Version) {
			return true
		}
	}
	return false
}

// newestOf is the i-th key's entry with the largest version among the
// successful answers.
func newestOf(answers []answer, i int) (store.Entry, bool) {
	var newest store.Entry
	found := false
	for _, a := range answers {
		if a.err != nil || !a.reads[i].Found {
			continue
		}
		if e := a.reads[i].Entry; !found || e.Version.After(newest.Version) {
			newest, found = e, true
		}
	}
	return newest, found
}

// readRepair writes each key's newest entry back to every replica that
// answered with an older one or none: one call per stale replica.
func (n *Node) readRepair(keys [][]byte, all []answer) {
	var stale []chord.Peer
	repairs := map[string][]store.Entry{}
	for i := range keys {
		newest, found := newestOf(all, i)
		if !found {
			continue
		}
		for _, a := range all {
			if a.err != nil || (a.reads[i].Found && !newest.Version.After(a.reads[i].Entry.Version)) {
				continue
			}
			if _, seen := repairs[a.peer.Addr]; !seen {
				stale = append(stale, a.peer)
			}
			repairs[a.peer.Addr] = append(repairs[a.peer.Addr], newest)
		}
	}
	for _, p := range stale {
		entries := repairs[p.Addr]
		n.stats.readRepairs.Add(int64(len(entries)))
		if p.Addr == n.self.Addr {
			if _, err := n.ApplyLocal(entries); err != nil {
				n.log.Warn("read repair of the local replica failed", "err", err)
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.CallTimeout)
		if _, err := n.peers.Apply(ctx, p, entries); err != nil {
			n.log.Debug("read repair failed", "replica", p.Addr, "keys", len(entries), "err", err)
		}
		cancel()
	}
}

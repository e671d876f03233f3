package kv

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/store"
)

// answer is one replica's reply to a coordinator.
type answer struct {
	peer  chord.Peer
	entry store.Entry
	found bool
	err   error
}

// gather calls every replica at once and returns as soon as need of them
// succeeded, or as soon as too many failed for that to happen. The calls
// run on a context detached from the client's (bounded by CallTimeout), so
// they finish after the client has its answer; then every answer, late ones
// included, goes to after (read repair), if set.
func (n *Node) gather(ctx context.Context, op Op, reps []chord.Peer, need int,
	call func(context.Context, chord.Peer) answer, after func([]answer)) ([]answer, error) {
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.CallTimeout)
	answers := make(chan answer, len(reps))
	for _, p := range reps {
		go func() { answers <- call(bg, p) }()
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
			}
		case <-ctx.Done():
			err = fmt.Errorf("%s: %d of the %d replicas required answered in time: %w", op, ok, need, ctx.Err())
		}
	}
	early := slices.Clone(got)
	n.background.Add(1)
	go func() {
		defer n.background.Add(-1)
		defer cancel()
		all := early
		for range len(reps) - len(early) {
			all = append(all, <-answers)
		}
		if after != nil {
			after(all)
		}
	}()
	return got, err
}

// coordinateWrite sends e to every replica and returns once the consistency
// level's count stored it durably; the rest keep replicating in the
// background, so a write acknowledged at quorum normally reaches all r.
func (n *Node) coordinateWrite(ctx context.Context, e store.Entry, c Consistency) error {
	reps := n.replicas()
	op := OpPut
	if e.Tombstone {
		op = OpDelete
	}
	_, err := n.gather(ctx, op, reps, required(c, n.cfg.Replicas, len(reps)), func(ctx context.Context, p chord.Peer) answer {
		var err error
		if p.Addr == n.self.Addr {
			_, err = n.ApplyLocal([]store.Entry{e})
		} else {
			_, err = n.peers.Apply(ctx, p, []store.Entry{e})
		}
		return answer{peer: p, err: err}
	}, nil)
	return err
}

// coordinateRead reads the consistency level's count of replicas and returns
// the newest entry among them; a missing key or a tombstone is ErrNotFound.
// Replicas found stale, including those that answer after the client has
// its reply, are repaired with the newest entry.
func (n *Node) coordinateRead(ctx context.Context, key []byte, c Consistency) (store.Entry, error) {
	reps := n.replicas()
	got, err := n.gather(ctx, OpGet, reps, required(c, n.cfg.Replicas, len(reps)), func(ctx context.Context, p chord.Peer) answer {
		var a answer
		a.peer = p
		if p.Addr == n.self.Addr {
			a.entry, a.found, a.err = n.local.Get(key)
		} else {
			a.entry, a.found, a.err = n.peers.Read(ctx, p, key)
		}
		return a
	}, n.readRepair)
	if err != nil {
		return store.Entry{}, err
	}
	newest, found := newestOf(got)
	if !found || newest.Tombstone {
		return store.Entry{}, ErrNotFound
	}
	return newest, nil
}

// newestOf is the entry with the largest version among successful answers.
func newestOf(answers []answer) (store.Entry, bool) {
	var newest store.Entry
	found := false
	for _, a := range answers {
		if a.err == nil && a.found && (!found || a.entry.Version.After(newest.Version)) {
			newest, found = a.entry, true
		}
	}
	return newest, found
}

// readRepair writes the newest entry back to every replica that answered
// with an older one or none.
func (n *Node) readRepair(all []answer) {
	newest, found := newestOf(all)
	if !found {
		return
	}
	for _, a := range all {
		if a.err != nil || (a.found && !newest.Version.After(a.entry.Version)) {
			continue
		}
		n.stats.readRepairs.Add(1)
		if a.peer.Addr == n.self.Addr {
			if _, err := n.ApplyLocal([]store.Entry{newest}); err != nil {
				n.log.Warn("read repair of the local replica failed", "err", err)
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.CallTimeout)
		if _, err := n.peers.Apply(ctx, a.peer, []store.Entry{newest}); err != nil {
			n.log.Debug("read repair failed", "replica", a.peer.Addr, "err", err)
		}
		cancel()
	}
}

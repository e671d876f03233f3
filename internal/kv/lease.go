package kv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// Read leases let an owner answer a quorum read from its own store, without
// the second replica's read that a quorum read otherwise waits for.
//
// Why it is safe. A quorum read at the owner O reads O and one of its r-1
// successors, so it sees every write that reached O, or that reached both of
// the others. O may read alone only when every acknowledged write reached O.
// Writes O coordinates do, unless O's own copy failed, which ends the lease
// at once (invalidateLease, before the write is acknowledged). So the lease
// is about writes others coordinate: a node that joined in front of O and
// does not know O yet, a successor that wrongly believes O dead, or a
// replica a client's router fell back to when O did not answer. O asks
// each of its replicas for a grant over its primary range (pred, O]; while a
// replica's grant is in force it refuses any write to that range that a node
// other than O coordinates, and does not coordinate one itself (checkGrants,
// coordinateWrite). A write coordinated elsewhere then needs O's copy to
// reach a quorum, as long as the coordinator's replica set holds at most
// one node outside O's: true of a joiner in front of O (its set is itself,
// O and O's successors) and of any node whose successors agree with O's.
// The simulation's lossy soak (make soak-sim) found a grantor coordinating
// for an unreachable O with its own successors before this rule. Writes such
// nodes finished before the grants are found by a catch-up with every
// grantor (pullNewer: it takes their newer entries and sends none), which
// O runs before it first reads alone; the grantors refuse, from their grant
// on, everything that could be missed. Repair traffic (read repair,
// anti-entropy, hand-off) is never refused: it moves existing versions and
// acknowledges no client.
//
// Time. A grantor counts its grant from when it receives the request; O
// counts its lease from before it sent it, shortened by leaseDriftMargin, so
// O stops reading alone before any grantor lets another coordinator write,
// as long as the two clocks' rates differ by less than that margin. Only
// monotonic clock readings are compared, each on its own node.
//
// Restarts. Grants live in memory, so a grantor that restarts forgets them.
// A node restarted on its old store (Config.Restarted) therefore refuses
// every write another node coordinates for its own ReadLease, the longest
// lease it grants, as if it had leased every range out; a single forgetful
// grantor would be harmless with r=3 (the other still refuses), two
// restarted within one lease would not be.
//
// The price is availability: when O crashes, its successor cannot write to
// O's range (its own grant to O refuses it) until the grants expire, up to
// one ReadLease; reads stay available. See Config.ReadLease.
//
// Idle. O asks for grants only while quorum reads of its range come to it
// (Config.ReadLeaseIdle): a range nobody reads costs no renewals, its
// writes are checked against no grant, and its owner's crash stalls none
// of them. The first read after a pause reads a quorum and wakes the
// renewal, which takes the lease anew: the same path, catch-up included,
// as a lease that lapsed under churn, so idling adds no case to the
// argument above.

// ErrLeased is a replica's refusal of a write to a range it leased to
// another coordinator, or of a grant that overlaps another node's grant.
var ErrLeased = errors.New("range leased to another node")

// leaseDriftMargin is the fraction of a lease the holder gives up to allow
// for its clock running slower than a grantor's.
const leaseDriftMargin = 10

// maxReadLease bounds a grant a replica accepts, so that a misconfigured or
// hostile holder cannot block a range's writes for long.
const maxReadLease = time.Minute

// grant is a lease this node gave: holder may read (from, to] alone until
// until.
type grant struct {
	from, to ring.ID
	until    time.Time
}

// grants are the leases this node gave as a replica, by holder address.
// Writes to the store that acknowledge a client hold mu for reading from
// their check until they are written, and a new grant holds it for writing,
// so that every write a grant does not refuse is in the store before the
// grant is answered and the holder's catch-up sees it.
type grants struct {
	mu       sync.RWMutex
	byHolder map[string]grant
	// forgottenUntil is when every grant an earlier run of this node may
	// have given has run out (Config.Restarted); zero when there are none
	// to wait out. New sets it; it never changes after.
	forgottenUntil time.Time
}

// arcsOverlap reports whether the ring intervals (a1, b1] and (a2, b2] share
// an identifier: if they do, the end of one lies in the other.
func arcsOverlap(a1, b1, a2, b2 ring.ID) bool {
	return ring.BetweenRightIncl(a2, b1, b2) || ring.BetweenRightIncl(a1, b2, b1)
}

// GrantLease is a replica's answer to a holder's request for a read lease
// over (from, to] for d: it refuses with ErrLeased while another holder's
// grant overlaps the range. A holder that asks again replaces its grant; d
// of 0 gives it up (ReleaseLease).
func (n *Node) GrantLease(holder chord.Peer, from, to ring.ID, d time.Duration) error {
	if holder.Addr == "" {
		return fmt.Errorf("%w: a lease needs a holder", ErrInvalidArgument)
	}
	if d < 0 || d > maxReadLease {
		return fmt.Errorf("%w: lease of %s; leases are 0 (a release) to %s", ErrInvalidArgument, d, maxReadLease)
	}
	if d > n.cfg.ReadLease {
		// After a restart this node waits out its own ReadLease for the
		// grants it forgot (Config.Restarted); a longer grant would
		// outlive that wait.
		if n.cfg.ReadLease == 0 {
			return fmt.Errorf("%w: read leases are off on %s (--read-lease 0); every node of a ring needs the same --read-lease", ErrInvalidArgument, n.self.Addr)
		}
		return fmt.Errorf("%w: lease of %s; %s grants up to its own --read-lease, %s; every node of a ring needs the same --read-lease",
			ErrInvalidArgument, d, n.self.Addr, n.cfg.ReadLease)
	}
	now := n.now()
	g := &n.grants
	g.mu.Lock()
	defer g.mu.Unlock()
	if d == 0 {
		delete(g.byHolder, holder.Addr)
		return nil
	}
	if holder.Addr != n.self.Addr {
		// Not over this node's own lease: while it reads that range alone
		// its own writes there must land here, which a grant to another
		// node would refuse. It gives the part up at its next renewal,
		// once it knows the asker as its predecessor.
		if own := n.heldAt(now); own != nil && arcsOverlap(from, to, own.from, own.to) {
			return fmt.Errorf("%w: %s holds (%s, %s] itself", ErrLeased, n.self.Addr, own.from.Short(), own.to.Short())
		}
	}
	for h, other := range g.byHolder {
		if now.After(other.until) {
			delete(g.byHolder, h)
			continue
		}
		if h != holder.Addr && arcsOverlap(from, to, other.from, other.to) {
			return fmt.Errorf("%w: %s holds (%s, %s] for %s more", ErrLeased, h, other.from.Short(), other.to.Short(),
				other.until.Sub(now).Round(time.Millisecond))
		}
	}
	if g.byHolder == nil {
		g.byHolder = map[string]grant{}
	}
	g.byHolder[holder.Addr] = grant{from: from, to: to, until: now.Add(d)}
	return nil
}

// checkGrants refuses entries that coordinator may not write because this
// node leased a range holding one of them to another node. The caller holds
// n.grants.mu for reading.
func (n *Node) checkGrants(coordinator string, entries []store.Entry) error {
	g := &n.grants
	if !g.forgottenUntil.IsZero() && coordinator != n.self.Addr {
		if now := n.now(); now.Before(g.forgottenUntil) {
			// No address: every caller names the replica it asked.
			return fmt.Errorf("%w: restarted and may have leased the range out before; takes writes other nodes coordinate in %s",
				ErrLeased, g.forgottenUntil.Sub(now).Round(time.Millisecond))
		}
	}
	if len(g.byHolder) == 0 {
		return nil
	}
	now := n.now()
	// A coordinator checks the grants of every other holder (two on a
	// 3-node ring): each key is hashed when the first live grant is
	// checked, not once per grant.
	var idBuf [4]ring.ID // a single put's key stays on the stack
	var ids []ring.ID
	for holder, gr := range g.byHolder {
		if holder == coordinator || now.After(gr.until) {
			continue
		}
		if ids == nil {
			ids = idBuf[:0]
			if len(entries) > len(idBuf) {
				ids = make([]ring.ID, 0, len(entries))
			}
			for i := range entries {
				ids = append(ids, ring.HashKey(entries[i].Key))
			}
		}
		for i, id := range ids {
			if ring.BetweenRightIncl(gr.from, id, gr.to) {
				return fmt.Errorf("%w: %s holds the read lease of key %q for %s more; it coordinates writes to it",
					ErrLeased, holder, entries[i].Key, gr.until.Sub(now).Round(time.Millisecond))
			}
		}
	}
	return nil
}

// ApplyFrom is a replica's handling of a write that coordinator is
// replicating: ApplyLocal, unless a read lease this node granted refuses it
// (ErrLeased). Repair traffic uses ApplyLocal, which leases never refuse.
func (n *Node) ApplyFrom(coordinator chord.Peer, entries []store.Entry) (int, error) {
	n.grants.mu.RLock()
	if err := n.checkGrants(coordinator.Addr, entries); err != nil {
		n.grants.mu.RUnlock()
		return 0, err
	}
	n.observe(entries)
	applied, wait, err := n.local.ApplyAsync(entries...)
	n.grants.mu.RUnlock()
	if err != nil {
		return 0, fmt.Errorf("apply %d entries: %w", len(entries), err)
	}
	if err := wait(); err != nil {
		return 0, err
	}
	return countApplied(applied), nil
}

// heldLease is the read lease this node holds over its primary range.
type heldLease struct {
	from, to ring.ID
	grantors []string // addresses, sorted
	until    time.Time
}

// leaseState is the holder's side; see RenewLease. Reads load held without
// the lock; changes to it and epoch hold mu.
type leaseState struct {
	mu    sync.Mutex
	held  atomic.Pointer[heldLease]
	epoch uint64 // bumped by invalidateLease, so a renewal in flight cannot revive a lease

	// wantedAt is when a quorum read last wanted the lease (readsAlone),
	// on n.now's clock, to within wantedGranularity; nil before the first.
	wantedAt atomic.Pointer[time.Time]
	// wake tells a quiescent renewLeases that a read wants the lease.
	wake chan struct{}
}

// wantedGranularity is how stale leaseState.wantedAt may be, as a share of
// ReadLease: reads refresh it only once it is this much older, so that
// concurrent reads do not all write the same word.
const wantedGranularity = 10

// wantLease records that a quorum read of this node's range wants its
// lease, and wakes a quiescent renewLeases.
func (n *Node) wantLease(now time.Time) {
	if last := n.lease.wantedAt.Load(); last != nil && now.Sub(*last) < n.cfg.ReadLease/wantedGranularity {
		return
	}
	at := now // a copy: storing &now would put now on the heap on every call
	n.lease.wantedAt.Store(&at)
	select {
	case n.lease.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// leaseWanted reports whether this node renews its lease at now: leases
// are on, and a quorum read wanted it within the last ReadLeaseIdle or
// leases never go idle (ReadLeaseIdle 0).
func (n *Node) leaseWanted(now time.Time) bool {
	switch {
	case n.cfg.ReadLease <= 0:
		return false
	case n.cfg.ReadLeaseIdle <= 0:
		return true
	}
	last := n.lease.wantedAt.Load()
	return last != nil && now.Sub(*last) < n.cfg.ReadLeaseIdle
}

// readsAlone reports whether this node may answer a quorum read of keys,
// which it owns now (replicaSet said so), from its own store: it holds an
// unexpired, caught-up lease whose range holds every key, granted by every
// one of others, the replicas the read would otherwise ask. Owning matters
// too: a read forwarded here by a node with an old view, for a key this
// node gave up (it left, or a node joined in front) while its lease still
// covers it, reads a quorum.
func (n *Node) readsAlone(keys [][]byte, others []chord.Peer) bool {
	if n.cfg.ReadLease <= 0 {
		return false
	}
	now := n.now()
	n.wantLease(now)
	l := n.heldAt(now)
	if l == nil {
		return false
	}
	for _, p := range others {
		if _, granted := slices.BinarySearch(l.grantors, p.Addr); !granted {
			return false
		}
	}
	for _, k := range keys {
		if !ring.BetweenRightIncl(l.from, ring.HashKey(k), l.to) {
			return false
		}
	}
	return true
}

// ReleaseLease ends this node's read lease and asks its grantors to drop
// their grants, so that the nodes taking over its range can write to it at
// once instead of waiting the grants out. A node leaving the ring calls it
// once it has left; it is best effort, bounded by ctx and CallTimeout.
func (n *Node) ReleaseLease(ctx context.Context) {
	l := n.dropLease()
	if l == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.CallTimeout)
	defer cancel()
	for _, addr := range l.grantors {
		if err := n.peers.GrantLease(cctx, chord.NewPeer(addr), n.self, l.from, l.to, 0); err != nil {
			n.log.Debug("read lease not released; it runs out by itself", "grantor", addr, "err", err)
		}
	}
}

// invalidateLease ends the lease at once: this node's copy of a write it
// coordinates failed, and the write may still be acknowledged by the other
// replicas, so its store may now miss an acknowledged write.
func (n *Node) invalidateLease() {
	if n.dropLease() != nil {
		n.log.Warn("dropping the read lease: a local write failed, so reads use a quorum until the lease is caught up again")
	}
}

// dropLease ends the lease this node holds, if any, and returns it; the
// epoch moves on, so that a renewal in flight cannot revive it.
func (n *Node) dropLease() *heldLease {
	n.lease.mu.Lock()
	defer n.lease.mu.Unlock()
	n.lease.epoch++
	return n.lease.held.Swap(nil)
}

// heldAt is the lease this node holds, unless it has none or it had run
// out at now.
func (n *Node) heldAt(now time.Time) *heldLease {
	if l := n.lease.held.Load(); l != nil && now.Before(l.until) {
		return l
	}
	return nil
}

// LeaseHeld reports whether this node answers quorum reads of its primary
// range alone now.
func (n *Node) LeaseHeld() bool {
	return n.heldAt(n.now()) != nil
}

// LeaseStatus is what a node reports of its read leases (Admin.Status).
type LeaseStatus struct {
	// Held is false while the node holds no unexpired lease; From, To,
	// Grantors and Remaining then say nothing.
	Held      bool
	From, To  ring.ID
	Grantors  []string
	Remaining time.Duration
	// Granted counts the unexpired leases this node grants other nodes.
	Granted int
	// Renewing is true while the node renews its lease: leases are on and
	// a quorum read wanted it within ReadLeaseIdle. Not held but renewing
	// is a lease its replicas have not granted (yet); neither is an idle
	// node.
	Renewing bool
}

// Leases reports the lease this node holds and how many it grants.
func (n *Node) Leases() LeaseStatus {
	now := n.now()
	var st LeaseStatus
	if l := n.heldAt(now); l != nil {
		st = LeaseStatus{Held: true, From: l.from, To: l.to, Grantors: slices.Clone(l.grantors), Remaining: l.until.Sub(now)}
	}
	st.Renewing = n.leaseWanted(now)
	n.grants.mu.RLock()
	for _, g := range n.grants.byHolder {
		if !now.After(g.until) {
			st.Granted++
		}
	}
	n.grants.mu.RUnlock()
	return st
}

// RenewLease asks each of this node's r-1 replicas for a grant over its
// primary range (predecessor, self] for ReadLease, and holds the lease once
// all of them granted it. A lease that is new, or that covers more of the
// ring or other grantors than the one still held, is first caught up: this
// node takes every grantor's newer entries of the range (and sends none), so
// that its store has every write acknowledged before the grants. Without a
// grant from every replica the lease lapses when it expires, and quorum
// reads read two replicas again.
//
// A lease no quorum read wanted within ReadLeaseIdle is not renewed:
// RenewLease then asks nothing and returns nil, and the lease runs out by
// itself (Config.ReadLeaseIdle). The daemon calls it every ReadLease/3
// while the lease is wanted.
func (n *Node) RenewLease(ctx context.Context) error {
	if !n.leaseWanted(n.now()) {
		return nil
	}
	nb := n.ring.Neighbors()
	if !n.synced.Load() || !n.ring.IsMember() || nb.Predecessor.IsZero() {
		return nil
	}
	from, to := nb.Predecessor.ID, n.self.ID
	reps := n.replicas()[1:]
	grantors := make([]string, len(reps))
	for i, p := range reps {
		grantors[i] = p.Addr
	}
	slices.Sort(grantors)

	n.lease.mu.Lock()
	epoch := n.lease.epoch
	prev := n.lease.held.Load()
	if prev != nil && prev.to == to && ring.Between(prev.from, from, to) {
		// The range shrank (a node joined in front): each grantor will
		// replace its grant with the smaller one, so reads alone must stop
		// for the part given up before any grantor does.
		narrowed := *prev
		narrowed.from = from
		n.lease.held.Store(&narrowed)
		prev = &narrowed
	}
	n.lease.mu.Unlock()

	start := n.now()
	cctx, cancel := context.WithTimeout(ctx, n.cfg.CallTimeout)
	errs := make(chan error, len(reps))
	for _, p := range reps {
		go func() {
			err := n.peers.GrantLease(cctx, p, n.self, from, to, n.cfg.ReadLease)
			if err != nil {
				err = fmt.Errorf("grant from %s: %w", p.Addr, err)
			}
			errs <- err
		}()
	}
	var failed []error
	for range reps {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	cancel()
	granted := n.now() // every grantor received its request before this
	if len(failed) > 0 {
		return fmt.Errorf("renew read lease of (%s, %s]: %w", from.Short(), to.Short(), errors.Join(failed...))
	}
	until := start.Add(n.cfg.ReadLease - n.cfg.ReadLease/leaseDriftMargin)
	// A lease over the same range and grantors whose grants were all
	// renewed before it ran out has every acknowledged write: no grantor
	// was free to take another coordinator's write in between, so
	// extending it needs no catch-up. The grantors count their old grants
	// past prev.until by the drift margin, and each received its renewal
	// before granted.
	extends := prev != nil && granted.Before(prev.until) && slices.Equal(prev.grantors, grantors) &&
		prev.from == from && prev.to == to
	if !extends {
		for _, p := range reps {
			if _, err := n.syncRange(ctx, p, from, to, pullNewer); err != nil {
				return fmt.Errorf("catch up read lease of (%s, %s]: %w", from.Short(), to.Short(), err)
			}
		}
	}
	n.lease.mu.Lock()
	defer n.lease.mu.Unlock()
	if n.lease.epoch != epoch {
		return fmt.Errorf("renew read lease of (%s, %s]: a local write failed meanwhile", from.Short(), to.Short())
	}
	if !n.now().Before(until) {
		return fmt.Errorf("renew read lease of (%s, %s]: expired before it was caught up", from.Short(), to.Short())
	}
	if !extends {
		n.log.Info("holding the read lease", "from", from.Short(), "to", to.Short(), "grantors", grantors)
	}
	n.lease.held.Store(&heldLease{from: from, to: to, grantors: grantors, until: until})
	return nil
}

// renewLeases calls RenewLease every third of ReadLease, while the lease is
// wanted, until ctx ends. While it is not, the loop sleeps until a read
// wants it (wantLease), so that an idle node asks its replicas nothing.
func (n *Node) renewLeases(ctx context.Context) {
	period := n.cfg.ReadLease / 3
	t := time.NewTicker(period)
	defer t.Stop()
	warned, idle := false, false
	for {
		if !n.leaseWanted(n.now()) {
			if !idle {
				n.log.Debug("read lease idle: no quorum read wanted it lately; it runs out by itself", "read-lease-idle", n.cfg.ReadLeaseIdle)
				idle = true
			}
			select {
			case <-ctx.Done():
				return
			case <-n.lease.wake:
			}
			t.Reset(period)
			continue
		}
		idle = false
		err := n.RenewLease(ctx)
		switch {
		case err == nil || ctx.Err() != nil:
			warned = false
		case errors.Is(err, ErrInvalidArgument) && !warned:
			// A replica refused the request itself, not for churn: most
			// likely its --read-lease differs from this node's. Said once
			// until a renewal succeeds; quorum reads go on meanwhile.
			n.log.Warn("read lease refused; every node of a ring needs the same --read-lease", "err", err)
			warned = true
		default:
			n.log.Debug("read lease not renewed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

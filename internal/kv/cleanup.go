package kv

import (
	"context"
	"fmt"
	"slices"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// Cleanup hands off and drops the entries this node holds but no longer
// replicates. After a join shifts ranges, the node that fell out of a key's
// replica set still has a copy; left there it wastes space and, once the
// replicas collect a delete's tombstone, could bring the deleted key back if
// ranges shift again. A node replicates (P_r, self], where P_r is its r-th
// predecessor; every entry outside is pushed to its key's current replica
// set (found by lookup) and removed here only once all of them stored it,
// and only at the version pushed. Entries whose replica set, by lookup,
// still includes this node are kept whatever the predecessor walk said, and
// so are those whose lookup named fewer than r replicas: the answering node's
// successor list was short, as in a ring of r nodes that one has just
// joined, whose list may leave out the joiner that is about to pull the
// range from this node (TestJoinMovesEachKeyOnce).
//
// Each batch covers an arc of the ring, from the previous batch's last key
// (or the set's start) to its own last key. Before pushing it to a replica,
// the node compares the arc's bucket digests with the replica's: where they
// are equal, the replica holds exactly the entries this node holds there, at
// the same versions, so the push is skipped. After a join, the node pushed
// out of a range otherwise wrote that whole range to all r replicas, two of
// which already held it, and every round until it was done.
func (n *Node) Cleanup(ctx context.Context) (int, error) {
	r := n.cfg.Replicas
	preds, err := n.ring.Predecessors(ctx, r)
	if err != nil {
		return 0, fmt.Errorf("cleanup: %w", err)
	}
	if len(preds) < r {
		return 0, nil // a ring of at most r nodes: everyone replicates everything
	}
	foreignFrom, foreignTo := n.self.ID, preds[r-1].ID // (self, P_r]

	var (
		batch   []store.Entry
		set     []chord.Peer // replica set for the keys in (setFrom, setTo]
		setFrom ring.ID
		setTo   ring.ID
		arcFrom ring.ID // the batch covers (arcFrom, lastPos]
		lastPos ring.ID
		handed  = map[string]store.Version{}
		errs    []error
	)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		defer func() { batch = batch[:0] }()
		if len(set) < n.cfg.Replicas || slices.ContainsFunc(set, func(p chord.Peer) bool { return p.Addr == n.self.Addr }) {
			return
		}
		// The batch was read before the digests are: a replica whose
		// digests match holds these versions or, where this node's copy
		// changed since, the newer ones, which RemoveIf then keeps.
		arc := arcFrom
		arcFrom = lastPos
		mine, digestErr := n.local.SettledDigests(arc, lastPos, 0)
		for _, p := range set {
			if digestErr == nil && arc != lastPos {
				same, err := n.holdsSame(ctx, p, arc, lastPos, mine)
				if err != nil {
					// Keep the batch for a later round: the replica may be
					// down, or still taking over its ranges after a join.
					errs = append(errs, fmt.Errorf("compare %d entries with %s: %w", len(batch), p.Addr, err))
					return
				}
				if same {
					continue
				}
			}
			cctx, cancel := context.WithTimeout(ctx, n.cfg.CallTimeout)
			_, err := n.peers.Apply(cctx, p, batch)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("hand %d entries to %s: %w", len(batch), p.Addr, err))
				return
			}
			n.cfg.Observer.EntriesHandedOff(DirectionOut, len(batch))
		}
		for _, e := range batch {
			handed[string(e.Key)] = e.Version
		}
	}
	var scanErr error
	err = n.local.Scan(foreignFrom, foreignTo, func(e store.Entry) bool {
		pos := ring.HashKey(e.Key)
		if set == nil || !ring.BetweenRightIncl(setFrom, pos, setTo) {
			flush()
			res, err := n.ring.Lookup(ctx, pos)
			if err != nil {
				scanErr = fmt.Errorf("cleanup: replicas of %s: %w", pos.Short(), err)
				return false
			}
			set = res.Successors[:min(len(res.Successors), n.cfg.Replicas)]
			// The lookup's last step came from the owner's predecessor,
			// so every key up to the owner shares this replica set. A
			// lookup this node answered itself (it owns pos after all)
			// covers pos alone; the set includes this node, so it keeps it.
			setFrom, setTo = pos, pos
			if len(res.Path) >= 2 {
				setFrom, setTo = res.Path[len(res.Path)-2].ID, res.Owner.ID
			}
			arcFrom = setFrom
		}
		lastPos = pos
		batch = append(batch, e)
		if len(batch) == 256 {
			flush()
		}
		return ctx.Err() == nil
	})
	flush()
	if err == nil {
		err = scanErr
	}
	if err != nil {
		errs = append(errs, err)
	}
	removed := 0
	if len(handed) > 0 {
		removed, err = n.local.RemoveIf(foreignFrom, foreignTo, func(e store.Entry) bool {
			v, ok := handed[string(e.Key)]
			return ok && v == e.Version
		})
		if err != nil {
			errs = append(errs, err)
		}
		n.log.Debug("dropped entries handed to their replicas", "count", removed)
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("cleanup: %v", errs)
	}
	return removed, nil
}

// holdsSame reports whether peer's bucket digests of (a, b] equal mine, this
// node's: then it holds the same entries there at the same versions. A peer
// still taking over its ranges declines (Node.DeclineRepair).
func (n *Node) holdsSame(ctx context.Context, peer chord.Peer, a, b ring.ID, mine []store.BucketDigest) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, n.cfg.CallTimeout)
	defer cancel()
	theirs, err := n.peers.Digests(cctx, peer, a, b, 0, true)
	if err != nil {
		return false, err
	}
	return len(differingBuckets(mine, theirs)) == 0, nil
}

package kv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// batchWorkers bounds the goroutines one batch uses for lookups, calls to
// owners and per-key fallbacks: enough to overlap round trips, few enough
// that one batch cannot flood the node.
const batchWorkers = 16

// GetMany reads a batch of keys; results[i] answers keys[i], a missing key
// with ErrNotFound. There is no isolation across keys: each is read as Get
// would read it. The keys this node coordinates are read together, one
// local pass and one call per other replica; the keys of every other owner
// go to that owner in one call. forwarded means as for Get.
func (n *Node) GetMany(ctx context.Context, keys [][]byte, c Consistency, forwarded bool) []Result {
	return n.many(ctx, OpGet, itemsOf(keys), c, forwarded)
}

// PutMany writes a batch of items; results[i] answers items[i] with the
// version written. There is no atomicity across items: each succeeds or
// fails on its own, as Put would. The items this node coordinates share one
// local write (one fsync) and one call per other replica; the items of
// every other owner go to that owner in one call.
func (n *Node) PutMany(ctx context.Context, items []Item, c Consistency, forwarded bool) []Result {
	return n.many(ctx, OpPut, items, c, forwarded)
}

// DeleteMany deletes a batch of keys, each as Delete would, with PutMany's
// grouping; results[i] answers keys[i] with the tombstone's version.
func (n *Node) DeleteMany(ctx context.Context, keys [][]byte, c Consistency, forwarded bool) []Result {
	return n.many(ctx, OpDelete, itemsOf(keys), c, forwarded)
}

// ownerGroup is the items of a batch one other node owns.
type ownerGroup struct {
	owner chord.Peer
	idx   []int // indexes into the batch
}

// many places each item with its owner and runs the items of each owner as
// one batch: here if this node owns them, else on the owner.
func (n *Node) many(ctx context.Context, op Op, items []Item, c Consistency, forwarded bool) []Result {
	results := make([]Result, len(items))
	var valid []int
	for i, it := range items {
		if err := n.checkItem(op, it); err != nil {
			results[i].Err = err
			continue
		}
		valid = append(valid, i)
	}
	here, groups := valid, []*ownerGroup(nil)
	if !forwarded {
		here, groups = n.place(ctx, op, items, valid, results)
	}
	if len(groups) == 0 {
		// The common case under client routing: every item is this
		// node's. It runs on the request's goroutine, whose stack has
		// grown for this work before; a fresh goroutine would grow its
		// own again and need waking.
		if len(here) > 0 {
			n.coordinateMany(ctx, op, items, here, c, results)
		}
		return results
	}
	var wg sync.WaitGroup
	if len(here) > 0 {
		wg.Go(func() { n.coordinateMany(ctx, op, items, here, c, results) })
	}
	forEach(len(groups), func(g int) { n.forwardGroup(ctx, op, items, groups[g], c, results) })
	wg.Wait()
	return results
}

func (n *Node) checkItem(op Op, it Item) error {
	if err := n.checkKey(it.Key); err != nil {
		return err
	}
	if op == OpPut && len(it.Value) > n.cfg.MaxValueBytes {
		return fmt.Errorf("%w: value is %d bytes, the limit is %d bytes (--max-value-bytes)", ErrInvalidArgument, len(it.Value), n.cfg.MaxValueBytes)
	}
	return nil
}

// place splits the valid items into those this node coordinates and groups
// by owner. Keys in this node's range need no lookup, so a batch a client
// routed by its ring view costs none; the others are looked up
// concurrently. A failed lookup fails its item.
func (n *Node) place(ctx context.Context, op Op, items []Item, valid []int, results []Result) (here []int, groups []*ownerGroup) {
	var elsewhere []int
	for _, i := range valid {
		if n.ring.Owns(ring.HashKey(items[i].Key)) {
			here = append(here, i)
		} else {
			elsewhere = append(elsewhere, i)
		}
	}
	owners := make([]chord.Peer, len(elsewhere))
	forEach(len(elsewhere), func(j int) {
		i := elsewhere[j]
		id := ring.HashKey(items[i].Key)
		res, err := n.ring.Lookup(ctx, id)
		if err == nil && len(res.Successors) == 0 {
			err = errors.New("the lookup named no owner")
		}
		if err != nil {
			results[i].Err = fmt.Errorf("%w: %s: route %s: %w", ErrUnavailable, op, id.Short(), err)
			return
		}
		owners[j] = res.Successors[0]
	})
	byOwner := map[string]*ownerGroup{}
	for j, i := range elsewhere {
		o := owners[j]
		switch {
		case o.Addr == "":
			// The lookup failed; results[i] says so.
		case o.Addr == n.self.Addr:
			here = append(here, i)
		default:
			g := byOwner[o.Addr]
			if g == nil {
				g = &ownerGroup{owner: o}
				byOwner[o.Addr] = g
				groups = append(groups, g)
			}
			g.idx = append(g.idx, i)
		}
	}
	return here, groups
}

// coordinateMany runs the items at idx, all owned by this node, as one
// replicated read or write.
func (n *Node) coordinateMany(ctx context.Context, op Op, items []Item, idx []int, c Consistency, results []Result) {
	if op == OpGet {
		if !n.synced.Load() {
			// Rare (right after a join): the single-key path knows to
			// ask the previous owner.
			forEach(len(idx), func(j int) { results[idx[j]] = n.get(ctx, items[idx[j]].Key, c, true) })
			return
		}
		keys := make([][]byte, len(idx))
		for j, i := range idx {
			keys[j] = items[i].Key
		}
		for j, r := range n.coordinateRead(ctx, keys, c) {
			results[idx[j]] = r
		}
		return
	}
	entries := make([]store.Entry, len(idx))
	for j, i := range idx {
		entries[j] = n.stamp(Request{Op: op, Key: items[i].Key, Value: items[i].Value})
	}
	err := n.coordinateWrite(ctx, op, entries, c)
	for j, i := range idx {
		if err != nil {
			results[i].Err = err
			continue
		}
		e := entries[j]
		results[i].Entry = store.Entry{Key: e.Key, Version: e.Version, Tombstone: e.Tombstone}
	}
}

// forwardGroup sends one owner's items to it in one call. If the owner does
// not answer, each item takes the single-key path, which tries the key's
// next replicas.
func (n *Node) forwardGroup(ctx context.Context, op Op, items []Item, g *ownerGroup, c Consistency, results []Result) {
	part := make([]Item, len(g.idx))
	for j, i := range g.idx {
		part[j] = items[i]
	}
	n.stats.forwarded.Add(int64(len(part)))
	rs, err := n.peers.ForwardMany(ctx, g.owner, op, part, c)
	if err == nil && len(rs) != len(part) {
		err = fmt.Errorf("%s answered %d of %d items", g.owner.Addr, len(rs), len(part))
	}
	if err == nil {
		for j, i := range g.idx {
			results[i] = rs[j]
			results[i].Owner = g.owner
		}
		return
	}
	if ctx.Err() != nil {
		for _, i := range g.idx {
			results[i].Err = fmt.Errorf("%s: forward %d items to %s: %w", op, len(part), g.owner.Addr, err)
		}
		return
	}
	n.log.Debug("batch owner did not answer; routing its keys one by one", "owner", g.owner.Addr, "keys", len(part), "err", err)
	forEach(len(g.idx), func(j int) {
		i := g.idx[j]
		if op == OpGet {
			results[i] = n.get(ctx, items[i].Key, c, false)
			return
		}
		results[i] = n.write(ctx, Request{Op: op, Key: items[i].Key, Value: items[i].Value, Consistency: c}, false)
	})
}

// forEach calls fn(i) for every i in [0, count) on at most batchWorkers
// goroutines and returns when all have run. Each call must write only its
// own slots of shared results.
func forEach(count int, fn func(i int)) {
	if count == 1 {
		fn(0)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(batchWorkers, count) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < count; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

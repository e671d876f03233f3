package sim

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// KVNode is one simulated member with storage: its chord node, its
// replication layer and its in-memory store.
type KVNode struct {
	Chord *chord.Node
	KV    *kv.Node
	Store *store.Store
}

// KVCluster is a Cluster whose nodes also store and replicate keys, with
// kv's peer calls carried by the same in-memory network (so loss, crashes
// and partitions apply to them too).
type KVCluster struct {
	*Cluster
	kvcfg  kv.Config
	mu     sync.RWMutex // guards byAddr: replication reads it from background goroutines
	byAddr map[string]*KVNode
	// ticks drives every node's hybrid logical clock from one virtual time,
	// so that versions are reproducible for a seed.
	ticks atomic.Int64
	// leaseClock is the virtual time read leases run on (kv.Config.Now),
	// in nanoseconds: RepairRound advances it by LeaseStep.
	leaseClock atomic.Int64
}

// LeaseStep is how much virtual time a RepairRound lets pass for read
// leases (kv.Config.ReadLease): a lease of one second lasts ten rounds.
const LeaseStep = 100 * time.Millisecond

func (c *KVCluster) leaseNow() time.Time {
	return time.Unix(1_700_000_000, c.leaseClock.Load())
}

// NewKVCluster returns an empty cluster; chordCfg and kvCfg are templates
// for every node.
func NewKVCluster(seed uint64, chordCfg chord.Config, kvCfg kv.Config) *KVCluster {
	if kvCfg.RepairSettle == 0 {
		// Virtual time advances a microsecond per clock reading, so no
		// write would ever be old enough to repair.
		kvCfg.RepairSettle = -1
	}
	c := &KVCluster{Cluster: NewCluster(seed, chordCfg), byAddr: map[string]*KVNode{}}
	if kvCfg.Now == nil {
		kvCfg.Now = c.leaseNow
	}
	c.kvcfg = kvCfg
	return c
}

// Advance moves the virtual time every node's hybrid logical clock reads
// forward by d, as time passing between client operations would: without
// it, writes made steps apart fall in the same virtual millisecond, and
// last writer wins orders them by the nodes' logical counters.
func (c *KVCluster) Advance(d time.Duration) {
	c.ticks.Add(int64(d / time.Microsecond))
}

func (c *KVCluster) now() time.Time {
	return time.Unix(1_700_000_000, 0).Add(time.Duration(c.ticks.Add(1)) * time.Microsecond)
}

// attach gives chord node n a store and a replication layer.
func (c *KVCluster) attach(n *chord.Node) (*KVNode, error) {
	st, err := store.Open(store.Options{InMemory: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	addr := n.Self().Addr
	k := &KVNode{Chord: n, Store: st}
	k.KV = kv.New(c.kvcfg, n, st, kvEndpoint{c: c, from: addr}, store.NewClock(c.now))
	c.mu.Lock()
	c.byAddr[addr] = k
	c.mu.Unlock()
	return k, nil
}

// KV returns the node on addr, or nil.
func (c *KVCluster) KV(addr string) *KVNode {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byAddr[addr]
}

// CreateKV starts the ring with its first node.
func (c *KVCluster) CreateKV() (*KVNode, error) {
	k, err := c.attach(c.Create())
	if err != nil {
		return nil, err
	}
	k.KV.MarkSynced()
	return k, nil
}

// JoinKV adds a node that joins through via and then takes over its range.
// The take-over waits for a predecessor, so the driver must run maintenance
// for the newcomer to be notified: JoinKV stabilizes the ring's neighbours
// of the newcomer itself.
func (c *KVCluster) JoinKV(ctx context.Context, via string) (*KVNode, error) {
	n := c.newNode()
	k, err := c.attach(n)
	if err != nil {
		return nil, err
	}
	if err := n.Join(ctx, []string{via}); err != nil {
		return k, err
	}
	// The newcomer's predecessor learns of it on its next stabilize, which
	// notifies the newcomer, and the newcomer's own stabilize fills its
	// successor list; run both now so the range hand-off can start.
	_ = n.Stabilize(ctx)
	if pred := c.Oracle().Predecessor(n.Self()); !pred.IsZero() {
		_ = c.Net.Node(pred.Addr).Stabilize(ctx)
	}
	return k, k.KV.SyncAfterJoin(ctx)
}

// LeaveKV hands n's range to its successors and leaves gracefully.
func (c *KVCluster) LeaveKV(ctx context.Context, k *KVNode) error {
	_, err := k.KV.HandOff(ctx)
	c.Leave(ctx, k.Chord)
	k.KV.ReleaseLease(ctx)
	return err
}

// RepairRound runs one maintenance round and then one anti-entropy and
// cleanup round, and a read lease renewal (a no-op with leases off), on
// every live member, in a seeded order; read leases' virtual time advances
// by LeaseStep first.
func (c *KVCluster) RepairRound(ctx context.Context) {
	c.leaseClock.Add(int64(LeaseStep))
	c.Round(ctx)
	members := c.Members()
	c.Net.Rand().Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	for _, n := range members {
		k := c.KV(n.Self().Addr).KV
		_, _ = k.AntiEntropy(ctx)
		_, _ = k.Cleanup(ctx)
		_ = k.RenewLease(ctx)
	}
}

// Replicas is the oracle's replica set of key: the first r live members
// from successor(SHA-1(key)).
func (c *KVCluster) Replicas(key []byte) []chord.Peer {
	o := c.Oracle()
	owner := o.Successor(ring.HashKey(key))
	return append([]chord.Peer{owner}, o.Successors(owner, c.kvcfg.Replicas-1)...)
}

// kvEndpoint is one node's kv.Peers over the simulated network.
type kvEndpoint struct {
	c    *KVCluster
	from string
}

func (e kvEndpoint) target(ctx context.Context, to chord.Peer) (*KVNode, error) {
	if _, err := e.c.Net.deliver(ctx, e.from, to.Addr); err != nil {
		return nil, err
	}
	k := e.c.KV(to.Addr)
	if k == nil {
		return nil, fmt.Errorf("%s: no kv layer: %w", to.Addr, ErrUnreachable)
	}
	return k, nil
}

func (e kvEndpoint) Forward(ctx context.Context, to chord.Peer, req kv.Request) (store.Entry, error) {
	k, err := e.target(ctx, to)
	if err != nil {
		return store.Entry{}, err
	}
	switch req.Op {
	case kv.OpGet:
		return k.KV.Get(ctx, req.Key, req.Consistency, true)
	case kv.OpPut:
		v, err := k.KV.Put(ctx, req.Key, req.Value, req.Consistency, true)
		return store.Entry{Key: req.Key, Version: v}, err
	default:
		v, err := k.KV.Delete(ctx, req.Key, req.Consistency, true)
		return store.Entry{Key: req.Key, Version: v, Tombstone: true}, err
	}
}

func (e kvEndpoint) Apply(ctx context.Context, to chord.Peer, entries []store.Entry) (int, error) {
	k, err := e.target(ctx, to)
	if err != nil {
		return 0, err
	}
	return k.KV.ApplyLocal(entries)
}

func (e kvEndpoint) Replicate(ctx context.Context, to, coordinator chord.Peer, entries []store.Entry) (int, error) {
	k, err := e.target(ctx, to)
	if err != nil {
		return 0, err
	}
	return k.KV.ApplyFrom(coordinator, entries)
}

func (e kvEndpoint) GrantLease(ctx context.Context, to, holder chord.Peer, from, until ring.ID, d time.Duration) error {
	k, err := e.target(ctx, to)
	if err != nil {
		return err
	}
	return k.KV.GrantLease(holder, from, until, d)
}

func (e kvEndpoint) ForwardMany(ctx context.Context, to chord.Peer, op kv.Op, items []kv.Item, c kv.Consistency) ([]kv.Result, error) {
	k, err := e.target(ctx, to)
	if err != nil {
		return nil, err
	}
	switch op {
	case kv.OpGet:
		return k.KV.GetMany(ctx, kv.Keys(items), c, true), nil
	case kv.OpDelete:
		return k.KV.DeleteMany(ctx, kv.Keys(items), c, true), nil
	}
	return k.KV.PutMany(ctx, items, c, true), nil
}

func (e kvEndpoint) Read(ctx context.Context, to chord.Peer, keys [][]byte) ([]kv.ReadResult, error) {
	k, err := e.target(ctx, to)
	if err != nil {
		return nil, err
	}
	return k.KV.ReadReplica(ctx, keys, false, 0)
}

func (e kvEndpoint) ReadStored(ctx context.Context, to chord.Peer, keys [][]byte) ([]kv.ReadResult, error) {
	k, err := e.target(ctx, to)
	if err != nil {
		return nil, err
	}
	return k.KV.ReadReplica(ctx, keys, true, 0)
}

func (e kvEndpoint) Digests(ctx context.Context, to chord.Peer, a, b ring.ID, horizon uint64, repair bool) ([]store.BucketDigest, error) {
	k, err := e.target(ctx, to)
	if err != nil {
		return nil, err
	}
	if repair {
		if err := k.KV.DeclineRepair(); err != nil {
			return nil, err
		}
	}
	return k.Store.SettledDigests(a, b, horizon)
}

func (e kvEndpoint) Versions(ctx context.Context, to chord.Peer, a, b ring.ID, buckets []int, fn func([]store.Entry) error) error {
	return e.Fetch(ctx, to, a, b, buckets, kv.WithoutValues(fn))
}

func (e kvEndpoint) Fetch(ctx context.Context, to chord.Peer, a, b ring.ID, buckets []int, fn func([]store.Entry) error) error {
	k, err := e.target(ctx, to)
	if err != nil {
		return err
	}
	for _, bk := range buckets {
		var batch []store.Entry
		if err := k.Store.BucketEntries(bk, a, b, func(en store.Entry) bool {
			batch = append(batch, en)
			return true
		}); err != nil {
			return err
		}
		if len(batch) > 0 {
			if err := fn(batch); err != nil {
				return err
			}
		}
	}
	return nil
}

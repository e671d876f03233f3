package kv

import (
	"log/slog"
	"time"
)

// Config holds the replication layer's knobs; each comment states the
// trade-off it controls.
type Config struct {
	// Replicas is r, the copies kept of every key. More replicas survive more
	// simultaneous crashes (an acknowledged write at consistency all survives
	// r-1) and spread reads, at r times the storage and write traffic. It
	// must not exceed the chord successor-list length + 1.
	Replicas int

	// MaxKeyBytes and MaxValueBytes bound a request. Larger limits let users
	// store bigger items; they also let one request occupy a node's memory
	// and a replica stream for longer.
	MaxKeyBytes   int
	MaxValueBytes int

	// CallTimeout bounds each call to another node. Writes keep replicating
	// in the background for up to this long after they are acknowledged.
	CallTimeout time.Duration

	// ReplicaCallsInFlight is how many of a coordinator's read or write
	// calls to one replica may be outstanding before further calls wait and
	// leave merged into one call when one of those returns. Fewer merge
	// more keys per call under load, which saves CPU on both nodes (an RPC
	// costs far more than a key), at the price of queueing behind the calls
	// in flight; more approach one call per key. An idle node sends every
	// call at once either way.
	ReplicaCallsInFlight int

	// ReplicaOverlapKeys is how many keys must be waiting for a replica
	// before a coordinator opens another concurrent call to it (up to
	// ReplicaCallsInFlight); an idle replica always gets a call at once.
	// Fewer waiting keys wait for the call in flight and leave merged when
	// it returns. Higher merges single-key requests harder (at 16, about
	// nine keys per write call instead of six under 64 single-key writers
	// on a 3-node ring, and 4-14% more quorum puts on 2 cores) at the price
	// of waiting one round trip more under moderate load; a batch's keys,
	// usually more than this, still overlap their calls. 1 opens another
	// call whenever a slot is free.
	ReplicaOverlapKeys int

	// ReplicaBatchKeys caps the keys of one merged replica call. Larger
	// batches amortise more; each merged call is one message, so the cap
	// also bounds its size (with MaxKeyBytes and MaxValueBytes).
	ReplicaBatchKeys int

	// AntiEntropyInterval is how often a node compares its primary range with
	// its replicas. Shorter intervals restore r replicas sooner after a crash;
	// each round costs one digest exchange per replica even when in sync.
	AntiEntropyInterval time.Duration

	// RepairSettle is how old the newer of two differing versions of a key
	// must be before anti-entropy moves it. A younger write is normally
	// still on its way to the replica through the write path, which keeps
	// replicating for up to CallTimeout after the acknowledgement; under a
	// steady write load nearly every compared bucket holds such a write, so
	// without a settle time each round would move them all a second time.
	// Longer settles move less under load; shorter ones repair sooner a
	// write whose replication failed. A version stamped ahead of this
	// node's clock (a peer's clock runs fast, within the store's drift
	// bound) waits too. 0 means twice CallTimeout; negative moves every
	// difference at once (simulations, whose clocks stand almost still).
	// Hand-off and a joining node's pull never wait.
	RepairSettle time.Duration

	// TombstoneGrace is how long a delete's tombstone is kept before it is
	// collected. It must exceed the longest time a replica can be down and
	// come back with the old value; shorter graces save space but risk
	// resurrecting deleted keys.
	TombstoneGrace time.Duration

	// JoinSyncTimeout bounds how long a new node waits to learn its
	// predecessor and take its ranges over (retrying a take-over a replica
	// did not answer) before it serves reads itself; until then it forwards
	// reads to its successor, the range's previous owner. Longer rides out
	// a slow replica; shorter puts a joiner to work sooner on a partial
	// copy that anti-entropy completes later.
	JoinSyncTimeout time.Duration

	// ReadLease, when above 0, lets an owner answer quorum reads of its
	// primary range from its own store while its r-1 replicas grant it a
	// lease of this length (renewed every third of it; see lease.go). A
	// quorum read then costs one replica's read instead of two: about
	// twice the reads per core on a 3-node ring. The price: after an
	// owner crashes, writes to its range fail (Unavailable) until the
	// grants it held expire, up to this long, and a node restarted on
	// its old store refuses writes others coordinate for this long (see
	// Restarted). Longer leases renew less often but stall those writes
	// longer. Reads at all, and everything at one, are unaffected. 0
	// turns leases off: every quorum read asks a second replica, and
	// writes wait out no lease.
	//
	// DefaultConfig's 1s, measured on a 2-core VM (docs/benchmarks.md,
	// thirteenth session): quorum gets at 0.75-1.3 of the bare gRPC
	// ceiling against 0.4-0.6 without; after a kill -9, writes to the dead
	// owner's range acknowledged within 0.95 s against 0.3 s without;
	// an idle node's CPU 1.5% of a core against 1.1% (before
	// ReadLeaseIdle let idle leases lapse). 2s stalled those writes up to
	// 2 s and saved 0.2% of a core at rest. Every node of a ring needs the
	// same value: a node grants no lease longer than its own.
	ReadLease time.Duration

	// ReadLeaseIdle lets an unused lease lapse: the owner renews its lease
	// only while a quorum read of its range reached it within the last
	// ReadLeaseIdle, and the first such read after a pause acquires it
	// again (it reads a quorum meanwhile; the new lease starts with a
	// catch-up, a digest exchange with each grantor). Idle ranges then
	// cost no renewals (two grant calls every ReadLease/3, about a fifth
	// of an idle node's CPU), a write-only load is checked against no
	// grants, and an idle owner's crash stalls no writes. Longer keeps
	// leases through longer pauses in reads; shorter lets them go sooner.
	// 0 renews the lease whether or not anything reads, as before this
	// option existed.
	//
	// DefaultConfig's 10s is ten leases: a range read every few seconds
	// keeps its lease, and one left alone for 10 s gives it up.
	ReadLeaseIdle time.Duration

	// Restarted says this node's store outlived an earlier run, which may
	// have granted read leases that this run does not remember: grants live
	// in memory. With ReadLease above 0 the node then refuses, for
	// ReadLease from New, every write another node coordinates, as it would
	// for a range it leased out; since it grants no lease longer than its
	// own ReadLease, that covers every grant it forgot. Writes still reach
	// a quorum through the other replicas, and anti-entropy brings this
	// node the ones it refused. A new node granted nothing and does not
	// wait.
	Restarted bool

	// Now is the clock read leases are timed by, read on each node alone
	// (lease.go); nil means time.Now. A simulation passes its virtual
	// clock, so that leases run out in simulated time.
	Now func() time.Time

	// Logger receives hand-off and repair events; nil discards.
	Logger *slog.Logger

	// Observer hears about entries moved by hand-off, anti-entropy and
	// cleanup, for metrics. Nil ignores them.
	Observer Observer
}

// DefaultConfig is r = 3, 1 KiB keys, 1 MiB values, 1s read leases idle
// after 10s: the daemon's defaults.
func DefaultConfig() Config {
	return Config{
		Replicas:             3,
		MaxKeyBytes:          1 << 10,
		MaxValueBytes:        1 << 20,
		CallTimeout:          2 * time.Second,
		ReplicaCallsInFlight: 2,
		ReplicaOverlapKeys:   16,
		ReplicaBatchKeys:     256,
		AntiEntropyInterval:  5 * time.Second,
		TombstoneGrace:       24 * time.Hour,
		JoinSyncTimeout:      10 * time.Second,
		ReadLease:            time.Second,
		ReadLeaseIdle:        10 * time.Second,
	}
}

func (c *Config) withDefaults() {
	d := DefaultConfig()
	if c.Replicas <= 0 {
		c.Replicas = d.Replicas
	}
	if c.MaxKeyBytes <= 0 {
		c.MaxKeyBytes = d.MaxKeyBytes
	}
	if c.MaxValueBytes <= 0 {
		c.MaxValueBytes = d.MaxValueBytes
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = d.CallTimeout
	}
	if c.ReplicaCallsInFlight <= 0 {
		c.ReplicaCallsInFlight = d.ReplicaCallsInFlight
	}
	if c.ReplicaOverlapKeys <= 0 {
		c.ReplicaOverlapKeys = d.ReplicaOverlapKeys
	}
	if c.ReplicaBatchKeys <= 0 {
		c.ReplicaBatchKeys = d.ReplicaBatchKeys
	}
	if c.AntiEntropyInterval <= 0 {
		c.AntiEntropyInterval = d.AntiEntropyInterval
	}
	if c.RepairSettle == 0 {
		c.RepairSettle = 2 * c.CallTimeout
	}
	if c.TombstoneGrace <= 0 {
		c.TombstoneGrace = d.TombstoneGrace
	}
	if c.JoinSyncTimeout <= 0 {
		c.JoinSyncTimeout = d.JoinSyncTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
}

package chord

import (
	"log/slog"
	"time"
)

// Config holds everything a Node needs from the outside. Every field states
// the trade-off it controls; start from a preset (LoopbackConfig, LANConfig,
// WANConfig) and override what you must.
type Config struct {
	// Addr is the advertised host:port. It is hashed (SHA-1) into the node's
	// ID and is what peers dial, so it must be reachable by every member and
	// stable across restarts: a node restarted on the same address keeps its
	// ID and therefore its key range.
	Addr string

	// Successors is r, the successor-list length. A node loses its place in
	// the ring only when all r successors fail between two stabilizations, so
	// longer lists tolerate more adjacent crashes; they cost r entries of
	// state per node and r peers per stabilize reply. Zave's proof assumes a
	// stable base of at least r+1 members; below that, lists are shorter and
	// simply wrap around to the node itself.
	Successors int

	// CallTimeout bounds every remote call the node makes. Short timeouts
	// find dead peers fast; too short ones call slow live peers dead and
	// churn pointers for nothing. It should sit well above the network's p99
	// round trip.
	CallTimeout time.Duration

	// LookupCandidates is how many closest-preceding nodes one lookup step
	// returns. More candidates let a lookup route around more dead hops
	// without backtracking, at the cost of larger replies.
	LookupCandidates int

	// MaxLookupAttempts bounds the remote calls one lookup may make,
	// successful hops and failed attempts together, so a lookup through a
	// badly broken ring ends with ErrLookupFailed instead of looping.
	MaxLookupAttempts int

	// StabilizeInterval is how often Run stabilizes. It sets how fast joins
	// become visible and crashes are repaired (a few intervals), against the
	// background traffic of one GetNeighbors and one Notify per interval.
	StabilizeInterval time.Duration

	// FixFingersInterval is how often Run refreshes one run of finger-table
	// entries (one lookup each). A full refresh takes about log2(N) calls.
	// Stale fingers cost extra hops, never wrong answers: correctness rests
	// on successor lists alone.
	FixFingersInterval time.Duration

	// FixFingersMaxInterval is how far Run slows fix-fingers down while the
	// finger table stops changing: each pass over the table that changes
	// nothing doubles the pause, up to this; any change restores
	// FixFingersInterval. Longer saves more of an idle ring's traffic (the
	// largest part of it at 100 ms); a finger gone stale while slowed costs
	// extra hops until the next pass, never a wrong answer. Zero means ten
	// times FixFingersInterval; equal to it turns the slowing off.
	FixFingersMaxInterval time.Duration

	// CheckPredecessorInterval is how often Run pings the predecessor, so a
	// crashed predecessor is forgotten and a live notifier can replace it.
	CheckPredecessorInterval time.Duration

	// CheckRingInterval is how often Run asks a seed or a recently failed
	// peer where this node's successor is (see CheckRing). It is what merges
	// a ring split by a long partition once the network heals; each check
	// costs one lookup, so it runs far less often than stabilize.
	CheckRingInterval time.Duration

	// Logger receives pointer changes at Info and routine failures at Debug.
	// Nil discards.
	Logger *slog.Logger

	// Observer hears about every lookup and stabilize round, for metrics.
	// Nil ignores them.
	Observer Observer
}

// LoopbackConfig suits nodes on one machine: round trips are microseconds,
// so failures are detected and repaired within a second or two.
func LoopbackConfig(addr string) Config {
	return Config{
		Addr:                     addr,
		Successors:               8,
		CallTimeout:              500 * time.Millisecond,
		LookupCandidates:         3,
		MaxLookupAttempts:        64,
		StabilizeInterval:        250 * time.Millisecond,
		FixFingersInterval:       100 * time.Millisecond,
		CheckPredecessorInterval: 250 * time.Millisecond,
		CheckRingInterval:        5 * time.Second,
	}
}

// LANConfig suits a data-centre network: sub-millisecond to few-millisecond
// round trips, occasional GC pauses.
func LANConfig(addr string) Config {
	c := LoopbackConfig(addr)
	c.CallTimeout = time.Second
	c.StabilizeInterval = 500 * time.Millisecond
	c.FixFingersInterval = 250 * time.Millisecond
	c.CheckPredecessorInterval = 500 * time.Millisecond
	c.CheckRingInterval = 10 * time.Second
	return c
}

// WANConfig suits members spread across regions: round trips of hundreds of
// milliseconds, so timeouts and intervals are longer.
func WANConfig(addr string) Config {
	c := LoopbackConfig(addr)
	c.CallTimeout = 3 * time.Second
	c.StabilizeInterval = 2 * time.Second
	c.FixFingersInterval = time.Second
	c.CheckPredecessorInterval = 2 * time.Second
	c.CheckRingInterval = 30 * time.Second
	return c
}

func (c *Config) withDefaults() {
	d := LoopbackConfig(c.Addr)
	if c.Successors <= 0 {
		c.Successors = d.Successors
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = d.CallTimeout
	}
	if c.LookupCandidates <= 0 {
		c.LookupCandidates = d.LookupCandidates
	}
	if c.MaxLookupAttempts <= 0 {
		c.MaxLookupAttempts = d.MaxLookupAttempts
	}
	if c.StabilizeInterval <= 0 {
		c.StabilizeInterval = d.StabilizeInterval
	}
	if c.FixFingersInterval <= 0 {
		c.FixFingersInterval = d.FixFingersInterval
	}
	if c.FixFingersMaxInterval <= 0 {
		c.FixFingersMaxInterval = 10 * c.FixFingersInterval
	}
	if c.CheckPredecessorInterval <= 0 {
		c.CheckPredecessorInterval = d.CheckPredecessorInterval
	}
	if c.CheckRingInterval <= 0 {
		c.CheckRingInterval = d.CheckRingInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
}

package store

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/chordkv/chordkv/internal/ring"
)

// Version orders the writes of one key across every replica. It is a hybrid
// logical clock timestamp plus the ID of the node that issued the write: two
// nodes writing in the same millisecond with the same logical counter still
// get distinct, totally ordered versions, so every replica picks the same
// winner without talking to the others.
type Version struct {
	HLC  uint64  // physical milliseconds << 16 | logical counter; see Clock
	Node ring.ID // the writer's node ID, the tie-breaker
}

// Compare orders versions by HLC, then by Node bytes. It returns -1, 0 or +1.
func (v Version) Compare(o Version) int {
	switch {
	case v.HLC < o.HLC:
		return -1
	case v.HLC > o.HLC:
		return 1
	}
	return bytes.Compare(v.Node[:], o.Node[:])
}

// After reports whether v is strictly newer than o: the last-writer-wins rule.
func (v Version) After(o Version) bool { return v.Compare(o) > 0 }

// IsZero reports whether v is the zero Version, older than every real write.
func (v Version) IsZero() bool { return v == Version{} }

// String is "<wall time>+<logical>@<node short>", for logs.
func (v Version) String() string {
	return fmt.Sprintf("%s+%d@%s", HLCTime(v.HLC).UTC().Format("2006-01-02T15:04:05.000Z"),
		v.HLC&logicalMask, v.Node.Short())
}

const (
	logicalBits = 16
	logicalMask = 1<<logicalBits - 1
)

// HLCAt returns the smallest HLC timestamp at wall time t: t in milliseconds
// with a zero logical counter. Times before the Unix epoch map to 0.
func HLCAt(t time.Time) uint64 {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms) << logicalBits
}

// HLCTime returns the wall time of an HLC timestamp, dropping the counter.
func HLCTime(hlc uint64) time.Time {
	return time.UnixMilli(int64(hlc >> logicalBits))
}

// ErrClockDrift is returned by Clock.Observe for a remote timestamp too far
// ahead of the local wall clock to be trusted.
var ErrClockDrift = errors.New("store: remote clock too far ahead")

// DefaultMaxDrift bounds how far ahead of the local wall clock a remote HLC
// may be before Observe rejects it. Without a bound one peer with a broken
// clock (or a forged timestamp) would drag every node's clock into the far
// future, and its writes would win every conflict until real time caught up.
const DefaultMaxDrift = time.Minute

// Clock is a hybrid logical clock (Kulkarni et al., 2014): timestamps follow
// wall-clock milliseconds when they can, never go backwards even when the
// wall clock does, and move past every timestamp the node has observed, so a
// write issued after seeing another write always has a larger version.
// It is safe for concurrent use.
type Clock struct {
	now      func() time.Time
	maxDrift time.Duration

	mu   sync.Mutex
	last uint64
}

// NewClock returns a Clock reading wall time from now (time.Now when nil) and
// rejecting remote timestamps more than DefaultMaxDrift ahead of it.
func NewClock(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now, maxDrift: DefaultMaxDrift}
}

// SetMaxDrift changes the bound Observe enforces; d <= 0 disables it.
func (c *Clock) SetMaxDrift(d time.Duration) {
	c.mu.Lock()
	c.maxDrift = d
	c.mu.Unlock()
}

// Now returns a timestamp larger than every one it returned or observed before.
func (c *Clock) Now() uint64 {
	phys := HLCAt(c.now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if phys > c.last {
		c.last = phys
	} else {
		// Wall clock stalled or stepped back: count logically. A counter that
		// overflows 16 bits carries into the millisecond field, which keeps
		// the order intact at the price of running ahead of wall time a little.
		c.last++
	}
	return c.last
}

// Observe advances the clock past a timestamp seen from a peer, so the next
// Now() is larger than remote. A remote timestamp further than the maximum
// drift ahead of local wall time is rejected with ErrClockDrift and ignored.
func (c *Clock) Observe(remote uint64) error {
	phys := HLCAt(c.now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.maxDrift > 0 && remote > phys && HLCTime(remote).Sub(HLCTime(phys)) > c.maxDrift {
		return fmt.Errorf("%w: remote %s, local %s", ErrClockDrift,
			HLCTime(remote).UTC().Format(time.RFC3339Nano), HLCTime(phys).UTC().Format(time.RFC3339Nano))
	}
	if remote > c.last {
		c.last = remote
	}
	return nil
}

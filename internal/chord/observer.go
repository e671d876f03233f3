package chord

import "time"

// Observer hears about the node's lookups and stabilizations, so that a
// daemon can export metrics without this package depending on a metrics
// library. Methods are called synchronously on the lookup's or stabilize's
// goroutine, possibly from many goroutines at once: they must be cheap,
// must not block and must be safe for concurrent use.
type Observer interface {
	// LookupDone reports a lookup this node ran (for a client request, a
	// finger refresh, a ring check or its own join): the hops it took to
	// reach the owner (LookupResult.Hops; 0 when this node owns the id), how
	// long it took, and its error, if any. A failed lookup's hops are the
	// ones it made before giving up.
	LookupDone(hops int, took time.Duration, err error)
	// StabilizeDone reports the outcome of one Stabilize round of a member.
	// Rounds of a node that is not a member do nothing and are not reported.
	StabilizeDone(err error)
}

// nopObserver is the default Observer: it ignores everything.
type nopObserver struct{}

func (nopObserver) LookupDone(int, time.Duration, error) {}
func (nopObserver) StabilizeDone(error)                  {}

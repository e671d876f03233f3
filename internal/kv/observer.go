package kv

// Direction says which way entries moved between this node and a peer.
type Direction string

const (
	// DirectionOut: entries this node sent to a peer to store.
	DirectionOut Direction = "out"
	// DirectionIn: entries this node received from a peer and stored
	// because they were newer than its own.
	DirectionIn Direction = "in"
)

// Observer hears about range transfers, so that a daemon can export metrics
// without this package depending on a metrics library. Methods are called
// synchronously from maintenance and request goroutines, possibly many at
// once: they must be cheap, must not block and must be safe for concurrent
// use.
type Observer interface {
	// EntriesHandedOff reports n entries moved by range maintenance, not by
	// client writes or read repair:
	//   - out: entries a peer acknowledged storing, pushed by the hand-off
	//     on a graceful stop, by anti-entropy, or by cleanup of a range this
	//     node no longer replicates. An entry sent to two peers counts twice.
	//   - in: entries pulled from a peer by a range sync (after a join, in
	//     anti-entropy, at the start of a hand-off) that were newer here and
	//     so were stored.
	// Entries a peer pushes to this node arrive through the same Apply call
	// as replicated client writes and cannot be told apart from them, so the
	// receiver does not count them; the pusher counts them as out.
	EntriesHandedOff(dir Direction, n int)

	// ReplicaCallSent reports one call to another replica on behalf of
	// client requests, after concurrent requests' calls were merged (see
	// ReplicaCallsInFlight): call is "read" or "apply", keys how many keys
	// it carried. Under load, keys per call is what merging saves.
	ReplicaCallSent(call string, keys int)
}

type nopObserver struct{}

func (nopObserver) EntriesHandedOff(Direction, int) {}
func (nopObserver) ReplicaCallSent(string, int)     {}

package chord

import (
	"context"
	"errors"

	"github.com/chordkv/chordkv/internal/ring"
)

// Peer names a node: its advertised address and the ID hashed from it.
// The zero Peer means "none".
type Peer struct {
	ID   ring.ID
	Addr string
}

// NewPeer builds the Peer for an advertised address.
func NewPeer(addr string) Peer { return Peer{ID: ring.HashAddr(addr), Addr: addr} }

// Addrs lists the peers' addresses, in order.
func Addrs(ps []Peer) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Addr
	}
	return out
}

// IsZero reports whether p names no node.
func (p Peer) IsZero() bool { return p.Addr == "" }

func (p Peer) String() string {
	if p.IsZero() {
		return "<none>"
	}
	return p.Addr
}

// Neighbors is what a node tells a peer that stabilizes against it or joins
// through it: its predecessor (zero when unknown) and its successor list.
type Neighbors struct {
	Predecessor Peer
	Successors  []Peer
}

// Step is one node's answer to "where is the successor of id?" in an
// iterative lookup.
type Step struct {
	// Done means id lies between the answering node and its first successor:
	// Successors[0] owns id. Successors is the answering node's whole list, so
	// the caller can read the owner's replicas without another round trip.
	Done       bool
	Successors []Peer
	// Next holds, when not Done, the answering node's closest preceding nodes
	// for id, closest first. The caller tries them in order, so a dead hop
	// falls back to the next candidate instead of failing the lookup.
	Next []Peer
}

// LeaveNotice is sent by a node leaving gracefully to its predecessor and
// successor so that they splice it out at once instead of waiting for a
// failed stabilize.
type LeaveNotice struct {
	Leaving     Peer
	Predecessor Peer
	Successors  []Peer
}

// Transport carries chord's remote calls to another node. Every method must
// honour ctx's deadline and return an error, never block forever, when the
// peer is dead, slow or unreachable.
type Transport interface {
	Ping(ctx context.Context, to Peer) error
	GetNeighbors(ctx context.Context, to Peer) (Neighbors, error)
	Notify(ctx context.Context, to Peer, candidate Peer) error
	FindSuccessorStep(ctx context.Context, to Peer, id ring.ID) (Step, error)
	Leave(ctx context.Context, to Peer, notice LeaveNotice) error
}

// Errors a Node returns. Transports map them to wire status codes.
var (
	// ErrNoLiveSuccessor means every successor-list entry failed; the node
	// is cut off until it rejoins.
	ErrNoLiveSuccessor = errors.New("chord: no live successor")
	// ErrLookupFailed means every route towards the id failed.
	ErrLookupFailed = errors.New("chord: lookup failed: no live route")
	// ErrJoinFailed means no join address answered.
	ErrJoinFailed = errors.New("chord: join failed")
)

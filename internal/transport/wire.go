package transport

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// Limits on what a peer may send. They are far above anything a correct node
// produces (successor lists are tens of entries) and exist so that a broken
// or hostile peer cannot make a node hold huge lists.
const (
	maxAddrLen  = 261 // 255-byte DNS name, ':' and a 5-digit port
	maxPeerList = 256
)

var errMissingPeer = errors.New("peer is missing")

// DecodeID reads a ring ID off the wire.
func DecodeID(b []byte) (ring.ID, error) {
	id, err := ring.FromBytes(b)
	if err != nil {
		return ring.ID{}, fmt.Errorf("invalid id: %w", err)
	}
	return id, nil
}

// ValidateAddr checks that addr is a dialable host:port: a non-empty host and
// a numeric port in 1..65535.
func ValidateAddr(addr string) error {
	if addr == "" {
		return errors.New("address is empty")
	}
	if len(addr) > maxAddrLen {
		return fmt.Errorf("address is %d bytes, longer than %d", len(addr), maxAddrLen)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("address %q: port must be a number in 1..65535", addr)
	}
	return nil
}

// DecodePeer validates a wire Peer. A nil message is the zero Peer ("none");
// callers that need a peer reject that themselves.
func DecodePeer(m *pb.Peer) (chord.Peer, error) {
	if m == nil {
		return chord.Peer{}, nil
	}
	if err := ValidateAddr(m.GetAddr()); err != nil {
		return chord.Peer{}, fmt.Errorf("invalid peer: %w", err)
	}
	id, err := DecodeID(m.GetId())
	if err != nil {
		return chord.Peer{}, fmt.Errorf("invalid peer %s: %w", m.GetAddr(), err)
	}
	if id != ring.HashAddr(m.GetAddr()) {
		return chord.Peer{}, fmt.Errorf("invalid peer %s: id %s is not SHA-1 of the address", m.GetAddr(), id.Short())
	}
	return chord.Peer{ID: id, Addr: m.GetAddr()}, nil
}

// decodeRequiredPeer is DecodePeer for fields that must name a node.
func decodeRequiredPeer(field string, m *pb.Peer) (chord.Peer, error) {
	if m == nil {
		return chord.Peer{}, fmt.Errorf("%s: %w", field, errMissingPeer)
	}
	p, err := DecodePeer(m)
	if err != nil {
		return chord.Peer{}, fmt.Errorf("%s: %w", field, err)
	}
	return p, nil
}

// decodePeers validates a list of peers; none may be absent.
func decodePeers(field string, ms []*pb.Peer) ([]chord.Peer, error) {
	if len(ms) > maxPeerList {
		return nil, fmt.Errorf("%s: %d peers, more than %d", field, len(ms), maxPeerList)
	}
	if len(ms) == 0 {
		return nil, nil
	}
	out := make([]chord.Peer, len(ms))
	for i, m := range ms {
		p, err := decodeRequiredPeer(fmt.Sprintf("%s[%d]", field, i), m)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// encodePeer turns the zero Peer into an absent field.
func encodePeer(p chord.Peer) *pb.Peer {
	if p.IsZero() {
		return nil
	}
	return &pb.Peer{Id: p.ID[:], Addr: p.Addr}
}

func encodePeers(ps []chord.Peer) []*pb.Peer {
	if len(ps) == 0 {
		return nil
	}
	out := make([]*pb.Peer, len(ps))
	for i, p := range ps {
		out[i] = encodePeer(p)
	}
	return out
}

func decodeNeighbors(m *pb.GetNeighborsResponse) (chord.Neighbors, error) {
	pred, err := DecodePeer(m.GetPredecessor())
	if err != nil {
		return chord.Neighbors{}, fmt.Errorf("predecessor: %w", err)
	}
	succs, err := decodePeers("successors", m.GetSuccessors())
	if err != nil {
		return chord.Neighbors{}, err
	}
	return chord.Neighbors{Predecessor: pred, Successors: succs}, nil
}

func decodeStep(m *pb.FindSuccessorStepResponse) (chord.Step, error) {
	succs, err := decodePeers("successors", m.GetSuccessors())
	if err != nil {
		return chord.Step{}, err
	}
	next, err := decodePeers("next", m.GetNext())
	if err != nil {
		return chord.Step{}, err
	}
	return chord.Step{Done: m.GetDone(), Successors: succs, Next: next}, nil
}

func encodeLeave(n chord.LeaveNotice) *pb.LeaveNotice {
	return &pb.LeaveNotice{
		Leaving:     encodePeer(n.Leaving),
		Predecessor: encodePeer(n.Predecessor),
		Successors:  encodePeers(n.Successors),
	}
}

func decodeLeave(m *pb.LeaveNotice) (chord.LeaveNotice, error) {
	leaving, err := decodeRequiredPeer("leaving", m.GetLeaving())
	if err != nil {
		return chord.LeaveNotice{}, err
	}
	pred, err := DecodePeer(m.GetPredecessor())
	if err != nil {
		return chord.LeaveNotice{}, fmt.Errorf("predecessor: %w", err)
	}
	succs, err := decodePeers("successors", m.GetSuccessors())
	if err != nil {
		return chord.LeaveNotice{}, err
	}
	return chord.LeaveNotice{Leaving: leaving, Predecessor: pred, Successors: succs}, nil
}

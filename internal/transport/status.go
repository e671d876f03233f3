package transport

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chordkv/chordkv/internal/chord"
)

// toStatus maps a node error to the gRPC status a caller acts on: routing
// failures are Unavailable (try again or try another node), a caller's own
// deadline or cancellation keeps its meaning, a status from a remote hop is
// passed on, anything else is Internal.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, chord.ErrLookupFailed),
		errors.Is(err, chord.ErrNoLiveSuccessor),
		errors.Is(err, chord.ErrJoinFailed):
		return unavailable(ReasonNoRoute, err.Error())
	}
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	return status.Error(codes.Internal, err.Error())
}

func invalidArgument(err error) error {
	return status.Error(codes.InvalidArgument, err.Error())
}

// ErrorDomain names chordkv in the ErrorInfo detail (google.rpc.ErrorInfo)
// a node attaches to each Unavailable status it decides on itself. gRPC
// reports a call that reached no node (the node is down, refused the
// connection, or failed the TLS handshake) as Unavailable too; the detail
// tells a client that a node did answer, and why it could not serve the
// request now.
const ErrorDomain = "chordkv"

// The reasons a node gives in its Unavailable statuses' ErrorInfo.
const (
	// ReasonNotMember: the node is not a ring member (yet, or any more).
	ReasonNotMember = "NOT_MEMBER"
	// ReasonNoRoute: the node found no live node to route the key to.
	ReasonNoRoute = "NO_ROUTE"
	// ReasonReplicas: the key's replicas could not serve the request now:
	// too few answered or took it (while a crashed owner's read lease runs
	// out, say), the route to them failed, or this node is still taking
	// over the range.
	ReasonReplicas = "REPLICAS_UNAVAILABLE"
)

// unavailable is a node's own Unavailable status, with its reason.
func unavailable(reason, msg string) error {
	s, err := status.New(codes.Unavailable, msg).WithDetails(&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: reason})
	if err != nil { // the detail always marshals; keep the status anyway
		return status.Error(codes.Unavailable, msg)
	}
	return s.Err()
}

// NodeAnswered reports whether err is an Unavailable status a chordkv node
// decided on itself (see ErrorDomain), rather than gRPC's report of a call
// that reached no node.
func NodeAnswered(err error) bool {
	s, ok := status.FromError(err)
	if !ok || s.Code() != codes.Unavailable {
		return false
	}
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return true
		}
	}
	return false
}

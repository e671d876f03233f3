package transport

import (
	"context"
	"errors"

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
		return status.Error(codes.Unavailable, err.Error())
	}
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	return status.Error(codes.Internal, err.Error())
}

func invalidArgument(err error) error {
	return status.Error(codes.InvalidArgument, err.Error())
}

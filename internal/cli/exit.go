package cli

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes are a contract with scripts; never renumber them.
//
//	code  meaning
//	0     success
//	1     any other failure
//	2     usage error or invalid argument (bad flag, bad env value, a
//	      request the server rejected as InvalidArgument)
//	3     not found (reserved for the key commands: get of a missing key)
//	4     unavailable: no endpoint answered within --timeout, or every one
//	      answered that it could not serve the request now (too few replicas)
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitNotFound    = 3
	ExitUnavailable = 4
)

// exitError carries the exit code an error should end the process with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withExitCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func usageErrorf(format string, args ...any) error {
	return withExitCode(ExitUsage, fmt.Errorf(format, args...))
}

// exitCode maps an error to the process exit code: an explicit code wins,
// then the gRPC status the server answered with, then ExitFailure.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	if e, ok := errors.AsType[*exitError](err); ok {
		return e.code
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.InvalidArgument:
			return ExitUsage
		case codes.NotFound:
			return ExitNotFound
		case codes.Unavailable, codes.DeadlineExceeded:
			return ExitUnavailable
		}
	}
	return ExitFailure
}

package client

import (
	"context"
	"fmt"
	"slices"
	"strings"

	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// MaxWalk bounds a ring walk, so a corrupt ring whose successor pointers
// never return to the start cannot keep a walk going.
const MaxWalk = 100000

// StatusFunc asks the node at addr for its status. It must bound the call
// with a deadline.
type StatusFunc func(ctx context.Context, addr string) (*pb.StatusResponse, error)

// Walk follows each node's first live successor from start until it comes
// back to a node already seen, or has seen limit nodes, and returns the
// nodes in ring order, start first.
func Walk(ctx context.Context, start *pb.StatusResponse, status StatusFunc, limit int) ([]*pb.StatusResponse, error) {
	nodes := []*pb.StatusResponse{start}
	seen := map[string]bool{start.GetAddr(): true}
	for cur := start; len(nodes) < limit; {
		next, err := nextLive(ctx, status, cur)
		if err != nil {
			return nil, err
		}
		if next == nil || seen[next.GetAddr()] {
			return nodes, nil
		}
		seen[next.GetAddr()] = true
		nodes = append(nodes, next)
		cur = next
	}
	return nodes, nil
}

// nextLive asks cur's successors in order and returns the first that
// answers; nil when cur knows no successor (a ring of one).
func nextLive(ctx context.Context, status StatusFunc, cur *pb.StatusResponse) (*pb.StatusResponse, error) {
	succs := slices.DeleteFunc(slices.Clone(cur.GetSuccessors()), func(a string) bool { return a == cur.GetAddr() })
	if len(succs) == 0 {
		return nil, nil
	}
	var errs []error
	for _, addr := range succs {
		st, err := status(ctx, addr)
		if err == nil {
			return st, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("ring walk stopped after %s: no successor answered: %w", cur.GetAddr(), joined(errs))
}

// joined is errors.Join on one line, as the CLI prints errors on one line.
type joined []error

func (j joined) Error() string {
	msgs := make([]string, len(j))
	for i, e := range j {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

func (j joined) Unwrap() []error { return j }

package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
)

// ErrUnreachable is what a call to a crashed, partitioned or unknown node,
// or a lost message, returns.
var ErrUnreachable = errors.New("sim: peer unreachable")

// Network is an in-memory network of chord nodes. It is safe for concurrent
// use, but runs are reproducible only when driven from one goroutine.
type Network struct {
	mu      sync.Mutex
	rng     *rand.Rand
	nodes   map[string]*chord.Node
	down    map[string]bool
	group   map[string]int // partition group; nodes in different groups cannot talk
	loss    float64
	latency time.Duration
	calls   uint64
}

// NewNetwork returns an empty network whose random choices follow seed.
func NewNetwork(seed uint64) *Network {
	return &Network{
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		nodes: make(map[string]*chord.Node),
		down:  make(map[string]bool),
		group: make(map[string]int),
	}
}

// SetLoss makes each call fail with probability p, as a lost message would.
func (net *Network) SetLoss(p float64) {
	net.mu.Lock()
	net.loss = p
	net.mu.Unlock()
}

// SetLatency delays every call by d of real time, so that concurrent tests
// see calls overlap the way they do over a network.
func (net *Network) SetLatency(d time.Duration) {
	net.mu.Lock()
	net.latency = d
	net.mu.Unlock()
}

// Partition splits the network: nodes in different groups cannot reach each
// other; nodes named in no group stay in group 0.
func (net *Network) Partition(groups ...[]string) {
	net.mu.Lock()
	defer net.mu.Unlock()
	clear(net.group)
	for i, g := range groups {
		for _, addr := range g {
			net.group[addr] = i + 1
		}
	}
}

// Heal removes every partition.
func (net *Network) Heal() { net.Partition() }

// Calls is the number of remote calls attempted so far.
func (net *Network) Calls() uint64 {
	net.mu.Lock()
	defer net.mu.Unlock()
	return net.calls
}

// Rand returns the network's seeded source, for drivers that must make
// their choices from the same seed. Not safe for concurrent use.
func (net *Network) Rand() *rand.Rand { return net.rng }

// AddNode creates a node on addr, not yet a member, wired to this network.
func (net *Network) AddNode(cfg chord.Config) *chord.Node {
	n := chord.NewNode(cfg, endpoint{net: net, from: cfg.Addr})
	net.mu.Lock()
	net.nodes[cfg.Addr] = n
	delete(net.down, cfg.Addr)
	net.mu.Unlock()
	return n
}

// Crash stops a node without warning: every call to it fails from now on.
func (net *Network) Crash(addr string) {
	net.mu.Lock()
	net.down[addr] = true
	net.mu.Unlock()
}

// Remove forgets a node entirely, as after a graceful leave.
func (net *Network) Remove(addr string) {
	net.mu.Lock()
	delete(net.nodes, addr)
	delete(net.down, addr)
	net.mu.Unlock()
}

// Node returns the node on addr, crashed or not.
func (net *Network) Node(addr string) *chord.Node {
	net.mu.Lock()
	defer net.mu.Unlock()
	return net.nodes[addr]
}

// IsUp reports whether addr names a node that has not crashed.
func (net *Network) IsUp(addr string) bool {
	net.mu.Lock()
	defer net.mu.Unlock()
	_, ok := net.nodes[addr]
	return ok && !net.down[addr]
}

func (net *Network) deliver(ctx context.Context, from, to string) (*chord.Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	net.mu.Lock()
	net.calls++
	n, ok := net.nodes[to]
	var err error
	switch {
	case !ok || net.down[to] || net.down[from]:
		err = fmt.Errorf("%s -> %s: %w", from, to, ErrUnreachable)
	case net.group[from] != net.group[to]:
		err = fmt.Errorf("%s -> %s: partitioned: %w", from, to, ErrUnreachable)
	case net.loss > 0 && net.rng.Float64() < net.loss:
		err = fmt.Errorf("%s -> %s: message lost: %w", from, to, ErrUnreachable)
	}
	latency := net.latency
	net.mu.Unlock()
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return n, err
}

// endpoint is one node's chord.Transport: calls leave from `from`.
type endpoint struct {
	net  *Network
	from string
}

func (e endpoint) Ping(ctx context.Context, to chord.Peer) error {
	_, err := e.net.deliver(ctx, e.from, to.Addr)
	return err
}

func (e endpoint) GetNeighbors(ctx context.Context, to chord.Peer) (chord.Neighbors, error) {
	n, err := e.net.deliver(ctx, e.from, to.Addr)
	if err != nil {
		return chord.Neighbors{}, err
	}
	return n.Neighbors(), nil
}

func (e endpoint) Notify(ctx context.Context, to, candidate chord.Peer) error {
	n, err := e.net.deliver(ctx, e.from, to.Addr)
	if err != nil {
		return err
	}
	n.Rectify(ctx, candidate)
	return nil
}

func (e endpoint) FindSuccessorStep(ctx context.Context, to chord.Peer, id ring.ID) (chord.Step, error) {
	n, err := e.net.deliver(ctx, e.from, to.Addr)
	if err != nil {
		return chord.Step{}, err
	}
	return n.FindSuccessorStep(id), nil
}

func (e endpoint) Leave(ctx context.Context, to chord.Peer, notice chord.LeaveNotice) error {
	n, err := e.net.deliver(ctx, e.from, to.Addr)
	if err != nil {
		return err
	}
	n.HandleLeave(notice)
	return nil
}

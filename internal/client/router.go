package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/transport"
	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// Errors that mean "this call could not go to the key's owner": the caller
// should send it the way it would without a Router (through its endpoints).
var (
	// ErrNoRoute: the Router knows no ring member yet (no refresh has
	// succeeded).
	ErrNoRoute = errors.New("no ring member known")
	// ErrOwnerUnavailable: the member the snapshot names as owner did not
	// answer (Unavailable); it may have left or died.
	ErrOwnerUnavailable = errors.New("owner unavailable")
)

// Unroutable reports whether err is ErrNoRoute or ErrOwnerUnavailable.
func Unroutable(err error) bool {
	return errors.Is(err, ErrNoRoute) || errors.Is(err, ErrOwnerUnavailable)
}

// Member is a ring member as the Router knows it.
type Member struct {
	ID   ring.ID
	Addr string
}

// Config configures a Router.
type Config struct {
	// Seeds are where a refresh starts its ring walk, tried in order; the
	// members of the current snapshot are tried after them, so the Router
	// survives the loss of every seed while the ring lives.
	Seeds []string
	// DialOptions open a connection to a member: credentials, message
	// sizes, backoff. The caller's, so that its TLS settings apply.
	DialOptions []grpc.DialOption
	// CallTimeout is the deadline of each Status call of a refresh
	// (default 3s).
	CallTimeout time.Duration
	// MinRefreshInterval is how often, at most, a redirect or an
	// unavailable owner starts a refresh (default 1s): a burst of stale
	// answers costs one ring walk, not one per request.
	MinRefreshInterval time.Duration
	// MaxWalk bounds the members a refresh walks (default MaxWalk).
	MaxWalk int
}

// Stats are the Router's cumulative counters.
type Stats struct {
	Redirects        int64 // answers that carried the chordkv-owner header
	OwnerUnavailable int64 // calls whose chosen owner was Unavailable
	Refreshes        int64 // ring walks that replaced the snapshot
	RefreshErrors    int64 // ring walks that failed
}

// Router sends each request to its key's owner as of its latest snapshot
// of the ring. It is safe for concurrent use; the hot path (Owner, Do)
// takes no lock but the connection pool's read lock.
type Router struct {
	cfg Config

	members atomic.Pointer[[]Member] // sorted by ID; replaced, never modified

	mu      sync.RWMutex // guards conns, retired and closed
	conns   map[string]*grpc.ClientConn
	retired []retiredConn // connections to departed members, closing soon
	closed  bool

	refreshMu   sync.Mutex   // one ring walk at a time
	refreshing  atomic.Bool  // a background refresh is in flight
	lastRefresh atomic.Int64 // UnixNano when the last refresh started
	bg          sync.WaitGroup
	bgCtx       context.Context
	bgCancel    context.CancelFunc

	redirects, ownerUnavailable, refreshes, refreshErrors atomic.Int64
}

// retireGrace is how long a connection to a departed member stays open
// after a refresh drops the member, so that calls already on it finish:
// longer than any sane call deadline.
const retireGrace = 30 * time.Second

// retiredConn is a connection to a node that is no longer a member.
type retiredConn struct {
	addr string
	cc   *grpc.ClientConn
	at   time.Time
}

// New returns a Router that knows no member yet: call Refresh, or let the
// first calls start one (they return ErrNoRoute meanwhile). Close it.
func New(cfg Config) *Router {
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 3 * time.Second
	}
	if cfg.MinRefreshInterval <= 0 {
		cfg.MinRefreshInterval = time.Second
	}
	if cfg.MaxWalk <= 0 {
		cfg.MaxWalk = MaxWalk
	}
	r := &Router{cfg: cfg, conns: map[string]*grpc.ClientConn{}}
	r.bgCtx, r.bgCancel = context.WithCancel(context.Background())
	r.members.Store(&[]Member{})
	return r
}

// Members returns the current snapshot, sorted by ID.
func (r *Router) Members() []Member { return slices.Clone(*r.members.Load()) }

// Stats returns the counters so far.
func (r *Router) Stats() Stats {
	return Stats{
		Redirects:        r.redirects.Load(),
		OwnerUnavailable: r.ownerUnavailable.Load(),
		Refreshes:        r.refreshes.Load(),
		RefreshErrors:    r.refreshErrors.Load(),
	}
}

// Owner returns key's owner in the current snapshot: the first member whose
// ID is at or after SHA-1(key), wrapping around the ring. ok is false when
// no member is known.
func (r *Router) Owner(key []byte) (m Member, ok bool) {
	return ownerOf(*r.members.Load(), ring.HashKey(key))
}

func ownerOf(members []Member, id ring.ID) (Member, bool) {
	if len(members) == 0 {
		return Member{}, false
	}
	i, _ := slices.BinarySearchFunc(members, id, func(m Member, id ring.ID) int { return m.ID.Cmp(id) })
	if i == len(members) {
		i = 0 // past the largest ID: the ring wraps to the smallest
	}
	return members[i], true
}

// CallFunc is one RPC on cc; it must pass opts on to the generated client
// method, as they capture the response header.
type CallFunc func(ctx context.Context, cc grpc.ClientConnInterface, opts ...grpc.CallOption) error

// Do runs call against key's owner. An answer whose chordkv-owner header
// says another node coordinated it starts a refresh (rate-limited, in the
// background); the answer itself stands, as the node forwarded the request
// to the right place. When no member is known, or the owner is Unavailable,
// Do also starts a refresh and returns an error that Unroutable accepts, so
// the caller can send this call another way. Other errors are the RPC's,
// with the owner's address added.
func (r *Router) Do(ctx context.Context, key []byte, call CallFunc) error {
	m, ok := r.Owner(key)
	if !ok {
		r.maybeRefresh()
		return ErrNoRoute
	}
	cc, err := r.conn(m.Addr)
	if err != nil {
		return err
	}
	var hdr metadata.MD
	err = call(ctx, cc, grpc.Header(&hdr))
	if len(hdr.Get(transport.OwnerHeader)) > 0 {
		r.redirects.Add(1)
		r.maybeRefresh()
	}
	if err == nil {
		return nil
	}
	if status.Code(err) == codes.Unavailable {
		r.ownerUnavailable.Add(1)
		r.maybeRefresh()
		return fmt.Errorf("%w: %s: %w", ErrOwnerUnavailable, m.Addr, err)
	}
	return fmt.Errorf("%s: %w", m.Addr, err)
}

// conn returns the pooled connection to addr, opening it on first use.
// Connections to members that left are retired by the next refresh and
// closed by a later one, retireGrace on (see retire).
func (r *Router) conn(addr string) (*grpc.ClientConn, error) {
	r.mu.RLock()
	cc, ok := r.conns[addr]
	closed := r.closed
	r.mu.RUnlock()
	if ok {
		return cc, nil
	}
	if closed {
		return nil, errors.New("router closed")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("router closed")
	}
	if cc, ok := r.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, r.cfg.DialOptions...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	r.conns[addr] = cc
	return cc, nil
}

// Refresh walks the ring now and replaces the snapshot. Concurrent
// refreshes run one after another.
func (r *Router) Refresh(ctx context.Context) error {
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	r.lastRefresh.Store(time.Now().UnixNano())
	members, err := r.walk(ctx)
	if err != nil {
		r.refreshErrors.Add(1)
		return err
	}
	r.members.Store(&members)
	r.refreshes.Add(1)
	r.retire(members, time.Now())
	return nil
}

// retire moves the connections to nodes that are neither members nor seeds
// out of the pool, and closes those retired at least retireGrace before
// now: closing one at once would fail calls still on it, while keeping
// them all would leak a connection per departed node over a long-lived
// client's life.
func (r *Router) retire(members []Member, now time.Time) {
	keep := map[string]bool{}
	for _, m := range members {
		keep[m.Addr] = true
	}
	for _, s := range r.cfg.Seeds {
		keep[s] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	var closing []retiredConn
	still := r.retired[:0]
	for _, rc := range r.retired {
		if now.Sub(rc.at) >= retireGrace {
			closing = append(closing, rc)
		} else {
			still = append(still, rc)
		}
	}
	r.retired = still
	for addr, cc := range r.conns {
		if !keep[addr] {
			delete(r.conns, addr)
			r.retired = append(r.retired, retiredConn{addr: addr, cc: cc, at: now})
		}
	}
	for _, rc := range closing {
		_ = rc.cc.Close() // the node left; an error closing changes nothing
	}
}

// maybeRefresh starts a background refresh unless one is in flight or one
// started less than MinRefreshInterval ago.
func (r *Router) maybeRefresh() {
	if time.Since(time.Unix(0, r.lastRefresh.Load())) < r.cfg.MinRefreshInterval {
		return
	}
	if !r.refreshing.CompareAndSwap(false, true) {
		return
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed { // Close is waiting for, or done with, r.bg
		r.refreshing.Store(false)
		return
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		defer r.refreshing.Store(false)
		// Errors are counted in Stats; the next trigger tries again.
		_ = r.Refresh(r.bgCtx)
	}()
}

// walk finds a member to start from (the seeds, then the known members)
// and walks the ring from it.
func (r *Router) walk(ctx context.Context) ([]Member, error) {
	candidates := slices.Clone(r.cfg.Seeds)
	for _, m := range *r.members.Load() {
		if !slices.Contains(candidates, m.Addr) {
			candidates = append(candidates, m.Addr)
		}
	}
	var start *pb.StatusResponse
	var errs []error
	for _, addr := range candidates {
		st, err := r.status(ctx, addr)
		if err == nil && !st.GetMember() {
			err = fmt.Errorf("%s: not a ring member", addr)
		}
		if err == nil {
			start = st
			break
		}
		errs = append(errs, err)
	}
	if start == nil {
		if len(candidates) == 0 {
			return nil, errors.New("refresh ring view: no seed addresses")
		}
		return nil, fmt.Errorf("refresh ring view: no node answered: %w", joined(errs))
	}
	nodes, err := Walk(ctx, start, r.status, r.cfg.MaxWalk)
	if err != nil {
		return nil, fmt.Errorf("refresh ring view: %w", err)
	}
	members := make([]Member, 0, len(nodes))
	for _, n := range nodes {
		if !n.GetMember() {
			continue
		}
		id, err := ring.ParseID(n.GetId())
		if err != nil {
			return nil, fmt.Errorf("refresh ring view: node %s: id: %w", n.GetAddr(), err)
		}
		members = append(members, Member{ID: id, Addr: n.GetAddr()})
	}
	slices.SortFunc(members, func(a, b Member) int { return a.ID.Cmp(b.ID) })
	return members, nil
}

// status is one Status call with the CallTimeout deadline, over the pooled
// connection.
func (r *Router) status(ctx context.Context, addr string) (*pb.StatusResponse, error) {
	cc, err := r.conn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	st, err := pb.NewAdminClient(cc).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("%s: status: %w", addr, err)
	}
	return st, nil
}

// Close stops background refreshes and closes every connection.
func (r *Router) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.bgCancel()
	r.bg.Wait()
	var errs []error
	for addr, cc := range r.conns { // closed: no one adds to conns any more
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", addr, err))
		}
	}
	for _, rc := range r.retired {
		if err := rc.cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", rc.addr, err))
		}
	}
	return errors.Join(errs...)
}

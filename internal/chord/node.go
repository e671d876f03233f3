package chord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/chordkv/chordkv/internal/ring"
)

// Node is one member's view of the ring and the maintenance steps that keep
// it right. All methods are safe for concurrent use; no lock is held across a
// remote call.
type Node struct {
	cfg  Config
	self Peer
	t    Transport
	log  *slog.Logger

	mu         sync.RWMutex
	pred       Peer   // zero when unknown or found dead
	predHeard  bool   // pred notified this node since the last CheckPredecessor
	succs      []Peer // closest first; empty means "I am alone"
	listFull   bool   // succs holds r entries, or wrapped round to self
	confirmed  bool   // a stabilize rebuilt the same full list it had; see State.Ready
	fingers    fingerTable
	nextFinger int
	member     bool     // created a ring, or joined through a live member
	seeds      []string // join addresses, kept to rejoin and to check the ring
	alumni     []Peer   // peers that recently failed a call, newest last; see CheckRing
	nextCheck  int      // round-robin position over seeds and alumni
	// left holds peers that announced a graceful leave, with the
	// stabilize rounds for which they stay out of the successor list (see
	// HandleLeave).
	left map[string]int
}

// maxAlumni bounds the failed peers remembered for CheckRing.
const maxAlumni = 16

// leftRounds is how many of this node's stabilize rounds a peer that
// announced its leave is kept out of the successor list: the round that may
// be in flight when the notice arrives, holding a list fetched before the
// neighbours spliced the peer out, and two more for neighbours whose own
// rounds were in flight.
const leftRounds = 3

// maxLeft bounds the leaves remembered at once. Notices come from the
// network; past this many, more are spliced out but not remembered.
const maxLeft = 64

// NewNode builds a node that is not yet a member: call Create or Join.
func NewNode(cfg Config, t Transport) *Node {
	cfg.withDefaults()
	self := NewPeer(cfg.Addr)
	return &Node{
		cfg:  cfg,
		self: self,
		t:    t,
		log:  cfg.Logger.With("node", cfg.Addr, "id", self.ID.Short()),
	}
}

// Self is this node's own Peer.
func (n *Node) Self() Peer { return n.self }

// Config returns the node's configuration, defaults filled in.
func (n *Node) Config() Config { return n.cfg }

// Create makes this node a ring of one. It owns every key until others join.
func (n *Node) Create() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pred, n.succs, n.listFull, n.confirmed, n.member = Peer{}, nil, true, true, true
	n.log.Info("created a new ring")
}

// Join enters the ring through the first of addrs that answers (Zave 2017,
// "join"): it looks up its own successor s, then copies s's whole successor
// list, so that it holds a full list taken from a live member the moment it
// becomes a member. The predecessor stays unknown until someone notifies.
// The node's own address is skipped, so every node may be given the same
// seed list.
func (n *Node) Join(ctx context.Context, addrs []string) error {
	n.mu.Lock()
	n.seeds = slices.Clone(addrs)
	n.mu.Unlock()
	var errs []error
	for _, addr := range addrs {
		if addr == "" || addr == n.self.Addr {
			continue
		}
		if err := n.joinVia(ctx, NewPeer(addr)); err != nil {
			errs = append(errs, err)
			continue
		}
		return nil
	}
	if len(errs) == 0 {
		return fmt.Errorf("%w: no join address other than %s", ErrJoinFailed, n.self.Addr)
	}
	return fmt.Errorf("%w: %w", ErrJoinFailed, errors.Join(errs...))
}

func (n *Node) joinVia(ctx context.Context, via Peer) error {
	res, err := n.lookup(ctx, via, n.self.ID, false)
	if err != nil {
		return fmt.Errorf("join via %s: %w", via.Addr, err)
	}
	// res.Successors starts at the owner. If the ring still lists an earlier
	// incarnation of this address (we restarted before anyone noticed), our
	// successor is what follows it; if the owner is dead, the next entry.
	candidates := res.Successors
	if i := slices.IndexFunc(candidates, func(p Peer) bool { return p.Addr == n.self.Addr }); i >= 0 {
		candidates = candidates[i+1:]
	}
	var errs []error
	for _, succ := range candidates {
		nb, err := n.getNeighbors(ctx, succ)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n.adoptSuccessor(succ, nb.Successors)
		n.log.Info("joined", "via", via.Addr, "successor", succ.Addr, "hops", res.Hops)
		n.notify(ctx, succ)
		return nil
	}
	return fmt.Errorf("join via %s: no live successor among %d: %w", via.Addr, len(candidates), errors.Join(errs...))
}

// setSuccessorsLocked installs a rebuilt successor list. A list counts as
// confirmed once a stabilize rebuilds exactly the full list the node already
// had: its successor agrees with it. Confirmation then sticks while the
// list stays full, so that readiness does not flap while the ring grows.
func (n *Node) setSuccessorsLocked(list []Peer, full bool) {
	if full && slices.EqualFunc(list, n.succs, func(a, b Peer) bool { return a.Addr == b.Addr }) {
		n.confirmed = true
	}
	if !full {
		n.confirmed = false
	}
	n.succs, n.listFull = list, full
}

// adoptSuccessor makes succ the first successor, its list the rest, and the
// node a member. The predecessor is left alone: a fresh node has none until
// someone notifies it, and a rejoining one keeps whatever still answers.
func (n *Node) adoptSuccessor(succ Peer, list []Peer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.setSuccessorsLocked(n.buildList(succ, list))
	n.member = true
}

// buildList is Zave's reconciliation: the chosen successor followed by its
// own list, cut to r entries. Entries stop at this node (the ring is smaller
// than r+1 and the list has wrapped) and never repeat.
//
// Peers that announced a graceful leave are left out (see HandleLeave), the
// first one too; the list is then empty when every candidate has left.
// Called with n.mu held.
func (n *Node) buildList(first Peer, rest []Peer) (list []Peer, full bool) {
	r := n.cfg.Successors
	list = make([]Peer, 0, r)
	for i, p := range slices.Concat([]Peer{first}, rest) {
		if len(list) == r {
			break
		}
		if i > 0 && p.Addr == n.self.Addr {
			return list, true
		}
		if p.IsZero() || n.left[p.Addr] > 0 || slices.ContainsFunc(list, func(q Peer) bool { return q.Addr == p.Addr }) {
			continue
		}
		list = append(list, p)
	}
	return list, len(list) == r
}

// Stabilize is one round of Zave's stabilize. It asks the first live
// successor s for its predecessor p and successor list; if p lies between
// this node and s and answers, p becomes the successor. The list is rebuilt
// from whichever node was chosen, and that node is notified. Dead successors
// are skipped and so drop out of the list.
func (n *Node) Stabilize(ctx context.Context) error {
	n.mu.Lock()
	succs, pred, member := slices.Clone(n.succs), n.pred, n.member
	for addr, rounds := range n.left {
		if rounds <= 1 {
			delete(n.left, addr)
		} else {
			n.left[addr] = rounds - 1
		}
	}
	n.mu.Unlock()
	if !member {
		return nil
	}
	err := n.stabilize(ctx, succs, pred)
	n.cfg.Observer.StabilizeDone(err)
	return err
}

func (n *Node) stabilize(ctx context.Context, succs []Peer, pred Peer) error {
	if len(succs) == 0 {
		// A ring of one learns its first successor from whoever notified it.
		if pred.IsZero() || pred.Addr == n.self.Addr {
			return nil
		}
		succs = []Peer{pred}
	}
	for _, s := range succs {
		nb, err := n.getNeighbors(ctx, s)
		if err != nil {
			n.log.Debug("stabilize: successor unreachable, skipping it", "successor", s.Addr, "err", err)
			n.remember(s)
			continue
		}
		chosen, list := n.walkPredecessors(ctx, s, nb)
		n.mu.Lock()
		old := n.successorLocked()
		// A neighbour that announced its leave while this round was in
		// flight may be in what it fetched; buildList drops it.
		n.setSuccessorsLocked(n.buildList(chosen, list))
		chosen = n.successorLocked()
		n.mu.Unlock()
		if chosen.Addr == n.self.Addr {
			return nil
		}
		if old.Addr != chosen.Addr {
			n.log.Info("successor changed", "from", old.Addr, "to", chosen.Addr)
		}
		n.notify(ctx, chosen)
		return nil
	}
	return n.rejoin(ctx, succs)
}

// maxPredecessorWalk bounds how far one Stabilize follows predecessor
// pointers back from its successor.
const maxPredecessorWalk = 32

// walkPredecessors applies Zave's adoption rule repeatedly: while the
// current candidate's predecessor p lies between this node and it, and p
// answers, p becomes the candidate. One step is the paper's stabilize; the
// walk is several of them back to back, so that many nodes joining between
// the same two members (all starting with the same successor) sort
// themselves in a few rounds rather than one position per round. A dead p
// is never adopted.
func (n *Node) walkPredecessors(ctx context.Context, s Peer, nb Neighbors) (Peer, []Peer) {
	chosen, list, pred := s, nb.Successors, nb.Predecessor
	for range maxPredecessorWalk {
		if pred.IsZero() || pred.Addr == n.self.Addr || !ring.Between(n.self.ID, pred.ID, chosen.ID) {
			break
		}
		pnb, err := n.getNeighbors(ctx, pred)
		if err != nil {
			n.remember(pred)
			break
		}
		chosen, list, pred = pred, pnb.Successors, pnb.Predecessor
	}
	return chosen, list
}

// rejoin is the last resort when every successor is dead, beyond what r
// was chosen to survive. The node first joins again through any peer it
// still knows; failing that, it takes the nearest live peer clockwise as its
// successor and lets later stabilizations walk back along predecessor
// pointers to the true one, Chord's ordinary repair.
func (n *Node) rejoin(ctx context.Context, dead []Peer) error {
	n.mu.RLock()
	var known []Peer
	if !n.pred.IsZero() {
		known = append(known, n.pred)
	}
	known = append(known, n.fingers.distinct()...)
	for _, a := range n.seeds {
		known = append(known, NewPeer(a))
	}
	n.mu.RUnlock()
	known = slices.DeleteFunc(known, func(c Peer) bool {
		return c.Addr == n.self.Addr || slices.ContainsFunc(dead, func(d Peer) bool { return d.Addr == c.Addr })
	})
	for _, c := range known {
		if err := n.joinVia(ctx, c); err == nil {
			return nil
		}
	}
	slices.SortFunc(known, func(a, b Peer) int {
		return ring.Distance(n.self.ID, a.ID).Cmp(ring.Distance(n.self.ID, b.ID))
	})
	for _, c := range known {
		if nb, err := n.getNeighbors(ctx, c); err == nil {
			n.adoptSuccessor(c, nb.Successors)
			n.log.Warn("every successor failed; re-entered the ring at the nearest live peer", "successor", c.Addr)
			n.notify(ctx, c)
			return nil
		}
	}
	return fmt.Errorf("stabilize %s: %w (tried %d successors, %d other peers)", n.self.Addr, ErrNoLiveSuccessor, len(dead), len(known))
}

func (n *Node) notify(ctx context.Context, to Peer) {
	if to.Addr == n.self.Addr {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.CallTimeout)
	defer cancel()
	if err := n.t.Notify(cctx, to, n.self); err != nil {
		n.log.Debug("notify failed", "to", to.Addr, "err", err)
	}
}

// Rectify handles a notification from candidate, which believes it is this
// node's predecessor (Zave 2017, "rectify", the corrected "notified"). The
// candidate replaces the predecessor only when there is none, when it lies
// strictly between the predecessor and this node, or when the predecessor
// no longer answers.
func (n *Node) Rectify(ctx context.Context, candidate Peer) {
	if candidate.IsZero() || candidate.Addr == n.self.Addr {
		return
	}
	n.mu.Lock()
	// A peer that left and notifies again has come back.
	delete(n.left, candidate.Addr)
	pred := n.pred
	if pred.Addr == candidate.Addr {
		n.predHeard = true
		n.mu.Unlock()
		return
	}
	if pred.IsZero() || ring.Between(pred.ID, candidate.ID, n.self.ID) {
		n.pred = candidate
		n.predHeard = false
		n.mu.Unlock()
		n.logPredecessorChange(pred, candidate)
		return
	}
	n.mu.Unlock()
	if err := n.ping(ctx, pred); err == nil {
		return
	}
	n.mu.Lock()
	replaced := n.pred.Addr == pred.Addr
	if replaced {
		n.pred = candidate
		n.predHeard = false
	}
	n.mu.Unlock()
	if replaced {
		n.logPredecessorChange(pred, candidate)
	}
}

func (n *Node) logPredecessorChange(from, to Peer) {
	if from.Addr != to.Addr {
		n.log.Info("predecessor changed", "from", from.Addr, "to", to.Addr)
	}
}

// CheckPredecessor forgets a predecessor that no longer answers, so that
// the next live notifier can take its place. A predecessor that notified
// this node since the last check has shown it is alive, and is not pinged:
// on a stable ring that is every check but the ones that matter, which
// saves a call per interval; a crash is still seen one check later.
func (n *Node) CheckPredecessor(ctx context.Context) error {
	n.mu.Lock()
	pred, heard := n.pred, n.predHeard
	n.predHeard = false
	n.mu.Unlock()
	if pred.IsZero() || heard {
		return nil
	}
	err := n.ping(ctx, pred)
	if err == nil {
		return nil
	}
	n.mu.Lock()
	if n.pred.Addr == pred.Addr {
		n.pred = Peer{}
		n.predHeard = false
	}
	n.mu.Unlock()
	n.remember(pred)
	n.log.Info("predecessor failed", "predecessor", pred.Addr, "err", err)
	return fmt.Errorf("check predecessor %s: %w", pred.Addr, err)
}

// FixFinger refreshes the next run of finger-table entries. Entry i is
// successor(self + 2^i) (Chord paper §4.3, 0-based). One lookup answers a
// whole run: every later start that still falls at or before the found
// successor has that same successor. A full pass over all 160 entries thus
// costs about log2(N) lookups instead of 160.
func (n *Node) FixFinger(ctx context.Context) error {
	_, _, err := n.fixFinger(ctx)
	return err
}

// fixFinger is FixFinger that also tells Run whether an entry changed and
// whether this run ended a pass over the table.
func (n *Node) fixFinger(ctx context.Context) (changed, passEnded bool, err error) {
	n.mu.RLock()
	i, succ, member := n.nextFinger, n.successorLocked(), n.member
	n.mu.RUnlock()
	if !member {
		return false, false, nil
	}
	start := n.self.ID.AddPow2(i)
	owner := succ
	if !ring.BetweenRightIncl(n.self.ID, start, succ.ID) {
		res, err := n.Lookup(ctx, start)
		if err != nil {
			n.mu.Lock()
			n.nextFinger = (i + 1) % ring.Bits
			n.mu.Unlock()
			return true, i+1 == ring.Bits, fmt.Errorf("fix finger %d: %w", i, err)
		}
		owner = res.Owner
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	j := i
	for j < ring.Bits && (j == i || ring.BetweenRightIncl(n.self.ID, n.self.ID.AddPow2(j), owner.ID)) {
		if old, ok := n.fingers.get(j); !ok || old.Addr != owner.Addr {
			changed = true
		}
		n.fingers.set(j, owner)
		j++
	}
	n.nextFinger = j % ring.Bits
	return changed, j == ring.Bits, nil
}

// Leave tells the predecessor and the successor that this node is going, so
// they splice it out at once. It is best effort: a node that cannot reach
// them is repaired around by stabilization, as after a crash.
func (n *Node) Leave(ctx context.Context) {
	n.mu.Lock()
	notice := LeaveNotice{Leaving: n.self, Predecessor: n.pred, Successors: slices.Clone(n.succs)}
	n.member = false
	n.mu.Unlock()
	targets := []Peer{notice.Predecessor}
	if len(notice.Successors) > 0 {
		targets = append(targets, notice.Successors[0])
	}
	for _, to := range targets {
		if to.IsZero() || to.Addr == n.self.Addr {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, n.cfg.CallTimeout)
		if err := n.t.Leave(cctx, to, notice); err != nil {
			n.log.Debug("leave notice failed", "to", to.Addr, "err", err)
		}
		cancel()
	}
	n.log.Info("left the ring")
}

// HandleLeave splices a gracefully leaving neighbour out of this node's
// pointers.
func (n *Node) HandleLeave(notice LeaveNotice) {
	gone := notice.Leaving.Addr
	if gone == "" || gone == n.self.Addr {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	// Stabilize rounds in flight, here or at a neighbour, may still hold a
	// list with the leaving node in it; keep it out while they land. A
	// node that comes back under the same address is let in again as soon
	// as it notifies this one (see Rectify).
	if n.left == nil {
		n.left = map[string]int{}
	}
	if _, ok := n.left[gone]; ok || len(n.left) < maxLeft {
		n.left[gone] = leftRounds
	}
	if n.pred.Addr == gone {
		n.pred = Peer{}
		n.predHeard = false
		if p := notice.Predecessor; !p.IsZero() && p.Addr != n.self.Addr {
			n.pred = p
		}
	}
	if i := slices.IndexFunc(n.succs, func(p Peer) bool { return p.Addr == gone }); i >= 0 {
		// The list is one short until the next stabilize refills it; its
		// readiness is left alone so that a neighbour's graceful leave does
		// not flap health.
		n.succs = slices.Delete(slices.Clone(n.succs), i, i+1)
		if len(n.succs) == 0 {
			next := slices.DeleteFunc(slices.Clone(notice.Successors), func(p Peer) bool { return p.Addr == gone })
			if len(next) > 0 {
				n.setSuccessorsLocked(n.buildList(next[0], next[1:]))
			}
		}
	}
	n.fingers.remove(gone)
}

func (n *Node) successorLocked() Peer {
	if len(n.succs) == 0 {
		return n.self
	}
	return n.succs[0]
}

func (n *Node) ping(ctx context.Context, p Peer) error {
	cctx, cancel := context.WithTimeout(ctx, n.cfg.CallTimeout)
	defer cancel()
	return n.t.Ping(cctx, p)
}

func (n *Node) getNeighbors(ctx context.Context, p Peer) (Neighbors, error) {
	if p.Addr == n.self.Addr {
		return n.Neighbors(), nil
	}
	cctx, cancel := context.WithTimeout(ctx, n.cfg.CallTimeout)
	defer cancel()
	return n.t.GetNeighbors(cctx, p)
}

// Neighbors answers a peer's GetNeighbors: the predecessor and successor list.
func (n *Node) Neighbors() Neighbors {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return Neighbors{Predecessor: n.pred, Successors: slices.Clone(n.succs)}
}

package sim

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
)

// Cluster drives chord nodes on a Network: it names and creates them, joins
// them, and runs maintenance rounds in a seeded order.
type Cluster struct {
	Net      *Network
	template chord.Config
	nodes    []*chord.Node // every node ever added, in creation order
	next     int
	// fingersChecked counts members, in oracle order, whose fingers were
	// verified at membership version checkedAt; see FingerErrors.
	fingersChecked int
	checkedAt      int
	membership     int // bumped whenever a node is added, crashes or leaves
	rounds         int
	// RingCheckEvery makes every member run CheckRing once every that many
	// rounds; zero never. It costs a lookup per member, so experiments that
	// never partition leave it off.
	RingCheckEvery int
}

// NewCluster returns an empty cluster; template supplies every node's Config
// except Addr.
func NewCluster(seed uint64, template chord.Config) *Cluster {
	return &Cluster{Net: NewNetwork(seed), template: template}
}

// newNode adds the next node, named sim-N so that runs are reproducible.
func (c *Cluster) newNode() *chord.Node {
	cfg := c.template
	cfg.Addr = fmt.Sprintf("sim-%d", c.next)
	c.next++
	c.membership++
	n := c.Net.AddNode(cfg)
	c.nodes = append(c.nodes, n)
	return n
}

// Create starts the ring with its first node.
func (c *Cluster) Create() *chord.Node {
	n := c.newNode()
	n.Create()
	return n
}

// JoinVia adds a node that joins through the member at via.
func (c *Cluster) JoinVia(ctx context.Context, via string) (*chord.Node, error) {
	n := c.newNode()
	if err := n.Join(ctx, []string{via}); err != nil {
		return n, err
	}
	return n, nil
}

// JoinRandom adds a node that joins through a randomly chosen live member.
func (c *Cluster) JoinRandom(ctx context.Context) (*chord.Node, error) {
	members := c.Members()
	if len(members) == 0 {
		return nil, errors.New("sim: no live member to join through")
	}
	via := members[c.Net.Rand().IntN(len(members))]
	return c.JoinVia(ctx, via.Self().Addr)
}

// Members lists the live nodes that are ring members, in creation order.
func (c *Cluster) Members() []*chord.Node {
	var out []*chord.Node
	for _, n := range c.nodes {
		if c.Net.IsUp(n.Self().Addr) && n.IsMember() {
			out = append(out, n)
		}
	}
	return out
}

// Crash fails node n without warning.
func (c *Cluster) Crash(n *chord.Node) {
	c.Net.Crash(n.Self().Addr)
	c.membership++
}

// Leave makes n leave gracefully and removes it from the network.
func (c *Cluster) Leave(ctx context.Context, n *chord.Node) {
	n.Leave(ctx)
	c.Net.Remove(n.Self().Addr)
	c.nodes = slices.DeleteFunc(c.nodes, func(m *chord.Node) bool { return m == n })
	c.membership++
}

// Round runs one maintenance round: every live member, in a seeded random
// order, stabilizes, fixes one run of fingers and checks its predecessor
// (and checks the ring, every RingCheckEvery rounds).
// It returns the number of steps that failed (expected under churn).
func (c *Cluster) Round(ctx context.Context) int {
	members := c.Members()
	c.Net.Rand().Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	c.rounds++
	checkRing := c.RingCheckEvery > 0 && c.rounds%c.RingCheckEvery == 0
	failed := 0
	for _, n := range members {
		for _, step := range []func(context.Context) error{n.Stabilize, n.FixFinger, n.CheckPredecessor} {
			if step(ctx) != nil {
				failed++
			}
		}
		if checkRing && n.CheckRing(ctx) != nil {
			failed++
		}
	}
	return failed
}

// Oracle is the true ring of the current live members.
func (c *Cluster) Oracle() Oracle {
	members := c.Members()
	peers := make([]chord.Peer, len(members))
	for i, n := range members {
		peers[i] = n.Self()
	}
	return NewOracle(peers)
}

// RingErrors compares every live member's predecessor and successor list with
// the oracle and describes up to max differences. None means the ring has
// converged exactly.
func (c *Cluster) RingErrors(max int) []string {
	o := c.Oracle()
	r := c.template.Successors
	var errs []string
	for _, p := range o.Peers() {
		st := c.Net.Node(p.Addr).Neighbors()
		want := o.Successors(p, r)
		if !samePeers(st.Successors, want) {
			errs = append(errs, fmt.Sprintf("%s: successors %v, want %v", p.Addr, chord.Addrs(st.Successors), chord.Addrs(want)))
		} else if wantPred := o.Predecessor(p); st.Predecessor.Addr != wantPred.Addr {
			errs = append(errs, fmt.Sprintf("%s: predecessor %s, want %s", p.Addr, st.Predecessor, wantPred))
		}
		if len(errs) >= max {
			break
		}
	}
	return errs
}

// FingerErrors checks every finger of live members against the oracle and
// describes up to max wrong or missing entries. Members already found right
// are not checked again until membership changes, because in a converged
// ring maintenance never makes a right finger wrong.
func (c *Cluster) FingerErrors(max int) []string {
	o := c.Oracle()
	if c.checkedAt != c.membership {
		c.fingersChecked, c.checkedAt = 0, c.membership
	}
	var errs []string
	for _, p := range o.Peers()[c.fingersChecked:] {
		if e := fingerError(c.Net.Node(p.Addr), o); e != "" {
			if errs = append(errs, e); len(errs) >= max {
				break
			}
		} else if len(errs) == 0 {
			c.fingersChecked++
		}
	}
	return errs
}

// fingerError describes n's first finger that differs from the oracle.
func fingerError(n *chord.Node, o Oracle) string {
	self := n.Self()
	for i := range ring.Bits {
		want := o.Successor(self.ID.AddPow2(i))
		if got, ok := n.Finger(i); !ok || got.Addr != want.Addr {
			return fmt.Sprintf("%s: finger %d is %s, want %s", self.Addr, i, got, want.Addr)
		}
	}
	return ""
}

// Converge runs rounds until the ring pointers (and, with fingers, every
// finger) match the oracle, or maxRounds pass. It returns the rounds run.
func (c *Cluster) Converge(ctx context.Context, maxRounds int, fingers bool) (int, error) {
	for round := 0; ; round++ {
		if len(c.RingErrors(1)) == 0 && (!fingers || len(c.FingerErrors(1)) == 0) {
			return round, nil
		}
		if round == maxRounds {
			errs := c.RingErrors(3)
			if len(errs) == 0 {
				errs = c.FingerErrors(3)
			}
			return round, fmt.Errorf("sim: not converged after %d rounds: %v", maxRounds, errs)
		}
		c.Round(ctx)
	}
}

// Invariants checks the properties of Zave's correctness proof over the
// live members' best successors (the first live entry of each successor
// list): every member has one (ConnectedAppendages needs it), following
// them from any member leads to one and the same cycle (AtLeastOneRing,
// AtMostOneRing), and that cycle goes round the identifier space exactly
// once (OrderedRing).
func (c *Cluster) Invariants() error {
	members := c.Members()
	if len(members) < 2 {
		return nil
	}
	best := make(map[string]chord.Peer, len(members))
	for _, n := range members {
		st := n.State()
		var b chord.Peer
		for _, s := range st.Successors {
			if c.Net.IsUp(s.Addr) {
				b = s
				break
			}
		}
		if b.IsZero() {
			return fmt.Errorf("ConnectedAppendages: %s has no live successor in %v", st.Self.Addr, chord.Addrs(st.Successors))
		}
		best[st.Self.Addr] = b
	}
	// Walk from the first member far enough to be on its cycle.
	at := members[0].Self()
	for range len(members) {
		at = best[at.Addr]
	}
	cycle := map[string]bool{}
	total := new(big.Int)
	for start := at; ; {
		cycle[at.Addr] = true
		next, ok := best[at.Addr]
		if !ok {
			return fmt.Errorf("ConnectedAppendages: %s's best successor %s is not a member", at.Addr, next.Addr)
		}
		total.Add(total, distanceOrFull(at.ID, next.ID))
		at = next
		if at.Addr == start.Addr {
			break
		}
	}
	if full := new(big.Int).Lsh(big.NewInt(1), ring.Bits); total.Cmp(full) != 0 {
		return fmt.Errorf("OrderedRing: the cycle of %d members goes round the circle %s/2^160 times", len(cycle), total)
	}
	for _, n := range members {
		at := n.Self()
		for range len(members) + 1 {
			if cycle[at.Addr] {
				break
			}
			at = best[at.Addr]
		}
		if !cycle[at.Addr] {
			return fmt.Errorf("AtMostOneRing: %s does not reach the ring through its best successors", n.Self().Addr)
		}
	}
	return nil
}

// distanceOrFull is the clockwise distance from a to b, a full turn when
// they are the same node.
func distanceOrFull(a, b ring.ID) *big.Int {
	if a == b {
		return new(big.Int).Lsh(big.NewInt(1), ring.Bits)
	}
	return ring.Distance(a, b).Big()
}

func samePeers(a, b []chord.Peer) bool {
	return slices.EqualFunc(a, b, func(x, y chord.Peer) bool { return x.Addr == y.Addr })
}

package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// leaseKeys are the keys TestReadLease writes in each round.
const leaseKeys = 60

// scrapeValue reads one unlabelled series from a node's /metrics.
func scrapeValue(metricsAddr, name string) (float64, error) {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s not exported", name)
}

// leaseHeld scrapes a node's chordkv_read_lease_held gauge.
func leaseHeld(metricsAddr string) (bool, error) {
	v, err := scrapeValue(metricsAddr, "chordkv_read_lease_held")
	return v == 1, err
}

// putUntilAcknowledged writes every key with a value for round through
// endpoints, retrying each put until it is acknowledged (a write to a
// crashed owner's range is refused until the owner's lease runs out), and
// returns the longest a put took to be acknowledged.
func (c *Cluster) putUntilAcknowledged(t *testing.T, s *kvState, round int, endpoints string) time.Duration {
	t.Helper()
	var longest time.Duration
	var mu = &s.mu
	err := parallel(leaseKeys, func(i int) error {
		key := fmt.Sprintf("leased-%03d", i)
		value := fmt.Sprintf("round-%d-of-%s", round, key)
		start := time.Now()
		for {
			r := c.CLI("put", key, value, "--endpoints", endpoints, "--timeout", cliTimeout)
			if r.Code == exitOK {
				break
			}
			if time.Since(start) > ringDeadline {
				return fmt.Errorf("put %s: not acknowledged in %s: %v", key, ringDeadline, r)
			}
			time.Sleep(100 * time.Millisecond)
		}
		took := time.Since(start)
		mu.Lock()
		s.values[key] = []byte(value)
		longest = max(longest, took)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return longest
}

// killAndRewrite kills victim with SIGKILL, then writes round of every key
// through survivors (putUntilAcknowledged, so puts to the victim's range
// wait out any lease it held) and waits until every key reads back from
// them. It logs the longest put and the wait.
func (c *Cluster) killAndRewrite(t *testing.T, s *kvState, round int, victim *Node, survivors ...*Node) {
	t.Helper()
	victim.Kill(t)
	longest := c.putUntilAcknowledged(t, s, round, strings.Join(c.Addrs(survivors...), ","))
	logTiming(t, "longest put after kill -9 of "+victim.Addr, longest)
	took := c.eventuallyAllKeys(t, s, c.Addrs(survivors...))
	logTiming(t, "every key readable from the survivors", took)
}

// keyOwnedBy returns the first of probe-0, probe-1, ... (a million at most)
// that o places in addr's range.
func keyOwnedBy(o ringOracle, addr string) (string, bool) {
	for i := range 1_000_000 {
		if k := fmt.Sprintf("probe-%d", i); o.owner(k) == addr {
			return k, true
		}
	}
	return "", false
}

// TestReadLease runs a 3-node ring with r = 3 and read leases on, as they
// are by default (no --read-lease flag), renewed whether or not anything
// reads (--read-lease-idle 0; TestReadLeaseIdles checks the default idling):
// every node comes to hold the lease of its range; keys written and
// overwritten read
// back at quorum; after kill -9 of a node, writes to its range resume once
// its lease has run out and read back from the survivors; and when it
// restarts with the old values of its range in its store, no read through
// it ever returns one of them, before or after it holds its lease again.
func TestReadLease(t *testing.T) {
	if lease, set := serveArgsReadLease(); set && lease == 0 {
		t.Skip("E2E_SERVE_ARGS turns read leases off")
	}
	c := NewCluster(t, 3, 2)
	metricsAddrs := freeAddrs(t, len(c.Nodes))
	c.ExtraArgs = []string{"--replicas", "3", "--anti-entropy-interval", antiEntropy, "--read-lease-idle", "0"}
	for i, n := range c.Nodes {
		n.ExtraArgs = []string{"--metrics-addr", metricsAddrs[i]}
		n.Start(t)
	}
	all := c.Nodes
	holds := func(i int) error {
		held, err := leaseHeld(metricsAddrs[i])
		if err != nil {
			return fmt.Errorf("%s: %w", all[i].Addr, err)
		}
		if !held {
			return fmt.Errorf("%s holds no read lease", all[i].Addr)
		}
		return nil
	}
	c.Eventually(t, "3 processes converge", ringDeadline, func() error { return checkConverged(c, all) })
	took := c.Eventually(t, "every node holds its read lease", ringDeadline, func() error {
		return errors.Join(holds(0), holds(1), holds(2))
	})
	logTiming(t, "every node holds its lease", took)
	// `chordkv status` shows the lease the way the gauge does: in a ring of
	// 3 with r=3, each node holds one granted by the two others and grants
	// the two others theirs.
	c.Eventually(t, "status shows every lease", ringDeadline, func() error {
		var errs []error
		for _, n := range all {
			st, err := c.Status(n.Addr)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			l := st.ReadLease
			if !l.Held || !l.Renewing || len(l.Grantors) != 2 || slices.Contains(l.Grantors, n.Addr) || l.RemainingMS <= 0 || st.LeasesGranted != 2 {
				errs = append(errs, fmt.Errorf("%s: status shows read lease %+v and %d leases granted", n.Addr, l, st.LeasesGranted))
			}
		}
		return errors.Join(errs...)
	})

	s := &kvState{values: map[string][]byte{}, deleted: map[string]bool{}}
	eps := strings.Join(c.Addrs(), ",")
	c.putUntilAcknowledged(t, s, 1, eps)
	c.putUntilAcknowledged(t, s, 2, eps)
	if err := c.checkAll(s, c.Addrs()); err != nil {
		t.Fatalf("reads under the leases: %v", err)
	}
	var alone float64
	for _, a := range metricsAddrs {
		v, err := scrapeValue(a, "chordkv_read_lease_reads_total")
		if err != nil {
			t.Fatal(err)
		}
		alone += v
	}
	if alone < leaseKeys/2 {
		t.Errorf("the %d reads were answered alone %v times in all, want most of them", leaseKeys, alone)
	}

	victim := all[1]
	c.killAndRewrite(t, s, 3, victim, all[0], all[2])

	// The restarted node's store holds round 2 of its range; round 3 must
	// be all any read through it returns, from the first answer on.
	victim.Start(t)
	leased := false
	sweeps := 0
	took = c.Eventually(t, "the restarted node holds its lease again and a sweep through it after that reads every key right", ringDeadline, func() error {
		sweeps++
		held := holds(1) == nil // before the sweep: a lease taken during it proves nothing
		err := c.checkAll(s, []string{victim.Addr})
		if errors.Is(err, errWrongData) {
			t.Fatalf("sweep %d through the restarted node: %v", sweeps, err)
		}
		if err != nil {
			return err
		}
		if !held {
			return errors.New("not holding its lease yet")
		}
		leased = true
		return nil
	})
	logTiming(t, fmt.Sprintf("restarted node leased and read right (%d sweeps)", sweeps), took)
	if !leased {
		t.Fatal("unreachable: Eventually returned without the lease")
	}

	// A successor that missed writes takes over a range. The owner's
	// successor is paused until the owner has dropped it from its
	// successor list; the owner's keys are overwritten meanwhile, so only
	// the owner and the third node have them; then the successor resumes
	// and the owner is killed. The successor now owns the owner's keys and
	// must not read them alone before its new lease has caught them up
	// (anti-entropy would leave writes this young alone, and no quorum read
	// runs through it before its lease to repair them).
	c.Eventually(t, "the 3 processes converge again", ringDeadline, func() error { return checkConverged(c, all) })
	o := newRingOracle(c.Addrs(), c.Successors)
	owner := c.Node(t, o.order()[0])
	successor := c.Node(t, o.successors(owner.Addr)[0])
	third := c.Node(t, o.successors(successor.Addr)[0])
	var ownersKeys []string
	for _, k := range s.keys() {
		if o.owner(k) == owner.Addr {
			ownersKeys = append(ownersKeys, k)
		}
	}
	if len(ownersKeys) == 0 {
		t.Fatalf("no key of the %d is owned by %s", leaseKeys, owner.Addr)
	}
	successor.Pause(t)
	paused := true
	defer func() {
		if paused {
			successor.Resume(t)
		}
	}()
	c.Eventually(t, "the owner drops its paused successor", ringDeadline, func() error {
		st, err := c.Status(owner.Addr)
		if err != nil {
			return err
		}
		if slices.Contains(st.Successors, successor.Addr) {
			return fmt.Errorf("%s still lists %s among its successors", owner.Addr, successor.Addr)
		}
		return nil
	})
	err := parallel(len(ownersKeys), func(i int) error {
		key := ownersKeys[i]
		value := fmt.Sprintf("round-4-of-%s", key)
		if r := c.CLI("put", key, value, "--endpoints", owner.Addr, "--timeout", cliTimeout); r.Code != exitOK {
			return fmt.Errorf("put %s while %s is paused: %v", key, successor.Addr, r)
		}
		s.mu.Lock()
		s.values[key] = []byte(value)
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	successor.Resume(t)
	paused = false
	owner.Kill(t)
	t.Logf("paused %s while %d keys of %s were overwritten, resumed it, killed %s", successor.Addr, len(ownersKeys), owner.Addr, owner.Addr)
	took = c.Eventually(t, "the successor holds a lease over the dead owner's range", ringDeadline, func() error {
		held, err := leaseHeld(metricsAddrs[slices.Index(all, successor)])
		if err != nil || !held {
			return fmt.Errorf("no lease yet (%v)", err)
		}
		st, err := c.Status(successor.Addr)
		if err != nil {
			return err
		}
		if st.Predecessor != third.Addr {
			return fmt.Errorf("predecessor %s, want %s", st.Predecessor, third.Addr)
		}
		return nil
	})
	logTiming(t, "successor leased the dead owner's range", took)
	// Its lease may predate the new predecessor by a renewal: wait for one.
	time.Sleep(time.Second)
	err = parallel(len(ownersKeys), func(i int) error { return c.checkKey(s, ownersKeys[i], successor.Addr) })
	if err != nil {
		t.Fatalf("reads of the dead owner's keys through its successor: %v", err)
	}
}

// TestReadLeaseIdles runs a 3-node ring with r = 3 and default flags, so
// that a lease no read wants lapses after --read-lease-idle's 10s: no node
// holds a lease or grants one before anything reads, writes alone take none,
// a client's quorum reads make every node take its lease, every lease has
// run out and no node grants any soon after the reads stop, and after kill
// -9 of an idle node, puts to its range are acknowledged from the survivors
// and read back.
func TestReadLeaseIdles(t *testing.T) {
	if lease, set := serveArgsReadLease(); set && lease == 0 {
		t.Skip("E2E_SERVE_ARGS turns read leases off")
	}
	c := NewCluster(t, 3, 2)
	metricsAddrs := freeAddrs(t, len(c.Nodes))
	c.ExtraArgs = []string{"--replicas", "3", "--anti-entropy-interval", antiEntropy}
	for i, n := range c.Nodes {
		n.ExtraArgs = []string{"--metrics-addr", metricsAddrs[i]}
		n.Start(t)
	}
	all := c.Nodes
	// leases checks that every node of nodes holds and renews its lease and
	// grants the two others theirs (want true), or holds, renews and grants
	// none (false), by its gauge and by `chordkv status`.
	leases := func(want bool, nodes ...*Node) error {
		var errs []error
		for _, n := range nodes {
			held, err := leaseHeld(metricsAddrs[slices.Index(all, n)])
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n.Addr, err))
				continue
			}
			st, err := c.Status(n.Addr)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			granted := 0
			if want {
				granted = len(nodes) - 1
			}
			if held != want || st.ReadLease.Held != want || st.ReadLease.Renewing != want || st.LeasesGranted != granted {
				errs = append(errs, fmt.Errorf("%s: gauge held %v, status shows read lease %+v and %d leases granted; want held and renewing %v and %d granted",
					n.Addr, held, st.ReadLease, st.LeasesGranted, want, granted))
			}
		}
		return errors.Join(errs...)
	}
	c.Eventually(t, "3 processes converge", ringDeadline, func() error { return checkConverged(c, all) })
	s := &kvState{values: map[string][]byte{}, deleted: map[string]bool{}}
	eps := strings.Join(c.Addrs(), ",")
	c.putUntilAcknowledged(t, s, 1, eps)
	if err := leases(false, all...); err != nil {
		t.Fatalf("after writes alone: %v", err)
	}

	// A node takes its lease only when a read of its own range comes, and
	// a small range may hold none of the written keys: each sweep also reads
	// a key, never written, that each node owns.
	o := newRingOracle(c.Addrs(), c.Successors)
	var probes []string
	for _, n := range all {
		k, ok := keyOwnedBy(o, n.Addr)
		if !ok {
			t.Fatalf("no key of a million falls in %s's range", n.Addr)
		}
		probes = append(probes, k)
	}
	sweeps := 0
	took := c.Eventually(t, "reads make every node take its lease", ringDeadline, func() error {
		sweeps++
		if err := c.checkAll(s, c.Addrs()); err != nil {
			if errors.Is(err, errWrongData) {
				t.Fatalf("sweep %d: %v", sweeps, err)
			}
			return err
		}
		for _, k := range probes {
			if r := c.CLI("get", k, "--endpoints", eps, "--timeout", cliTimeout); r.Code != exitNotFound {
				return fmt.Errorf("get %s, never written: %v", k, r)
			}
		}
		return leases(true, all...)
	})
	logTiming(t, fmt.Sprintf("every node leased after reads began (%d sweeps)", sweeps), took)

	took = c.Eventually(t, "every lease runs out once the reads stop", ringDeadline, func() error {
		return leases(false, all...)
	})
	logTiming(t, "every lease out after the reads stopped", took)

	c.killAndRewrite(t, s, 2, all[1], all[0], all[2])
}

package e2e

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

const (
	ringSize       = 8
	ringSuccessors = 4 // below ringSize-1, so the oracle checks list truncation too
	lookupKeys     = 50
	lookupWorkers  = 4 // concurrent CLI processes during the lookup sweep
)

// checkConverged asks every node in members for the ring and for its status
// and checks both against the oracle of exactly those members.
func checkConverged(c *Cluster, members []*Node) error {
	o := newRingOracle(c.Addrs(members...), c.Successors)
	for _, n := range members {
		v, err := c.Ring(n.Addr)
		if err != nil {
			return err
		}
		if err := o.checkRing(v); err != nil {
			return fmt.Errorf("ring from %s: %w", n.Addr, err)
		}
		st, err := c.Status(n.Addr)
		if err != nil {
			return err
		}
		if err := o.checkStatus(st, n.Addr); err != nil {
			return err
		}
	}
	return nil
}

// TestRing drives one ring of 8 real processes through its life, step by
// step: it forms, routes every lookup to the right owner, heals around two
// kill -9'd neighbours, and takes them back when they restart on the same
// address. Each step needs the previous one, so a failed step ends the test.
// Run with -v to see the timings quoted in docs/benchmarks.md.
func TestRing(t *testing.T) {
	c := StartCluster(t, ringSize, ringSuccessors)
	all := c.Nodes

	if !t.Run("converge", func(t *testing.T) {
		took := c.Eventually(t, "8 processes converge to the oracle's ring", ringDeadline,
			func() error { return checkConverged(c, all) })
		logTiming(t, fmt.Sprintf("converge %d nodes", len(all)), took)
	}) {
		return
	}

	if !t.Run("lookups", func(t *testing.T) {
		o := newRingOracle(c.Addrs(), c.Successors)
		keys := make([]string, 0, lookupKeys)
		for i := range lookupKeys - 4 {
			keys = append(keys, fmt.Sprintf("user:%04d", i))
		}
		keys = append(keys, "a", "key with spaces", "ключ", "🔑/x=y&z")

		type job struct{ from, key string }
		jobs := make(chan job)
		var wg sync.WaitGroup
		var mu sync.Mutex
		hops := map[int]int{}
		for range lookupWorkers {
			wg.Go(func() {
				for j := range jobs {
					v, err := c.Lookup(j.from, j.key)
					if err == nil {
						err = o.checkLookup(v, j.key)
					}
					if err != nil {
						t.Errorf("lookup from %s: %v", j.from, err)
						continue
					}
					mu.Lock()
					hops[v.Hops]++
					mu.Unlock()
				}
			})
		}
		for _, n := range all {
			for _, k := range keys {
				jobs <- job{n.Addr, k}
			}
		}
		close(jobs)
		wg.Wait()
		t.Logf("%d lookups from %d nodes; hop counts (hops: lookups): %v", len(keys)*len(all), len(all), hops)
	}) {
		return
	}

	// Kill two nodes that are neighbours on the ring, neither of them the
	// node the others joined through.
	victims := c.adjacentPair(t, all[0])
	ids := map[*Node]string{}

	if !t.Run("heal after kill -9", func(t *testing.T) {
		for _, v := range victims {
			st, err := c.Status(v.Addr)
			if err != nil {
				t.Fatal(err)
			}
			ids[v] = st.ID
		}
		for _, v := range victims {
			v.Kill(t)
		}
		t.Logf("killed %s and %s (neighbours on the ring)", victims[0].Addr, victims[1].Addr)
		survivors := slices.DeleteFunc(slices.Clone(all), func(n *Node) bool { return slices.Contains(victims, n) })
		took := c.Eventually(t, "ring heals to the 6 survivors", ringDeadline,
			func() error { return checkConverged(c, survivors) })
		logTiming(t, "heal after 2 kill -9", took)
	}) {
		return
	}

	t.Run("restart on the same address", func(t *testing.T) {
		for _, v := range victims {
			v.Start(t)
		}
		took := c.Eventually(t, "restarted nodes are back in the ring", ringDeadline,
			func() error { return checkConverged(c, all) })
		logTiming(t, "rejoin after restart of 2 nodes", took)
		for _, v := range victims {
			st, err := c.Status(v.Addr)
			if err != nil {
				t.Fatal(err)
			}
			if st.ID != ids[v] {
				t.Errorf("%s came back with id %s, had %s", v.Addr, st.ID, ids[v])
			}
		}
	})

	// The node that created the ring has no --join: restarted, it must
	// rejoin through the peers remembered in its data dir instead of
	// creating a second ring.
	t.Run("creator restarted without --join rejoins", func(t *testing.T) {
		creator := all[0]
		creator.Kill(t)
		creator.Start(t)
		took := c.Eventually(t, "restarted creator is back in the one ring", ringDeadline,
			func() error { return checkConverged(c, all) })
		logTiming(t, "rejoin after restart of the ring's creator", took)
	})
}

// TestSIGTERMLeavesCleanly stops one node of three with SIGTERM: it must
// exit with status 0 within the grace period, and the other two must close
// the ring without it.
func TestSIGTERMLeavesCleanly(t *testing.T) {
	c := StartCluster(t, 3, ringSuccessors)
	c.Eventually(t, "3 processes converge", ringDeadline, func() error { return checkConverged(c, c.Nodes) })
	leaving := c.Nodes[2]
	if err := leaving.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	took := c.Eventually(t, "the 2 others close the ring", ringDeadline,
		func() error { return checkConverged(c, c.Nodes[:2]) })
	logTiming(t, "ring closed after SIGTERM of 1 of 3", took)
}

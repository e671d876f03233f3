package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// TestBenchRereplication measures, on real processes, how long the
// survivors take to restore r = 3 replicas of 100,000 keys after one node of
// five is killed with SIGKILL: from the kill until the live nodes together
// hold exactly 3 × 100,000 entries again (anti-entropy re-creates the lost
// copies; cleanup removes any extra ones). It is a benchmark, not a CI step:
//
//	make build && CHORDKV_BENCH=1 CHORDKV_BIN=$PWD/bin/chordkv \
//	  go test -count=1 -v -timeout 15m -run TestBenchRereplication ./test/e2e/
func TestBenchRereplication(t *testing.T) {
	if os.Getenv("CHORDKV_BENCH") != "1" {
		t.Skip("benchmark: set CHORDKV_BENCH=1 to run it")
	}
	const nodes, keys, r, callers = 5, 100_000, 3, 64
	c := StartCluster(t, nodes, 0)
	c.Eventually(t, "ring of 5 ready", time.Minute, func() error {
		for _, n := range c.Nodes {
			st, err := c.Status(n.Addr)
			if err != nil {
				return err
			}
			if !st.Ready {
				return fmt.Errorf("%s not ready", n.Addr)
			}
		}
		return nil
	})

	// Load through every node, as clients spread over the endpoints would.
	var clients []pb.KVClient
	for _, n := range c.Nodes {
		conn, err := grpc.NewClient(n.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		clients = append(clients, pb.NewKVClient(conn))
	}
	value := make([]byte, 100)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	for w := range callers {
		wg.Go(func() {
			kv := clients[w%len(clients)]
			for i := next.Add(1) - 1; i < keys; i = next.Add(1) - 1 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := kv.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "bench-%06d", i), Value: value})
				cancel()
				if err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	load := time.Since(start)
	t.Logf("loaded %d keys of %d bytes with %d callers in %.1f s (%.0f puts/s, %d failed)",
		keys, len(value), callers, load.Seconds(), keys/load.Seconds(), failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d puts failed", failed.Load())
	}

	total := func(live []*Node) (int64, error) {
		var sum int64
		for _, n := range live {
			st, err := c.Status(n.Addr)
			if err != nil {
				return 0, err
			}
			sum += st.StoredKeys
		}
		return sum, nil
	}
	c.Eventually(t, "every key on 3 replicas before the kill", 2*time.Minute, func() error {
		if got, err := total(c.Nodes); err != nil || got != keys*r {
			return fmt.Errorf("%d entries stored, want %d (%v)", got, keys*r, err)
		}
		return nil
	})
	victim := c.Nodes[2]
	victim.Kill(t)
	live := []*Node{c.Nodes[0], c.Nodes[1], c.Nodes[3], c.Nodes[4]}
	took := c.Eventually(t, "every key on 3 replicas again", 5*time.Minute, func() error {
		if got, err := total(live); err != nil || got != keys*r {
			return fmt.Errorf("%d entries stored, want %d (%v)", got, keys*r, err)
		}
		return nil
	})
	logTiming(t, fmt.Sprintf("re-replicate %d keys after kill -9 of 1 of %d nodes", keys, nodes), took)
}

package sim

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chordkv/chordkv/internal/kv"
	"github.com/chordkv/chordkv/internal/store"
)

// BenchmarkKVRing16 measures the data layout and repair costs the key-value
// issue asks for, on a 16-node ring with r = 3 and 100,000 keys of 100-byte
// values written at quorum through random coordinators:
//
//   - keys held per node (all roles) and primary keys per node: max/mean
//     load, i.e. how evenly SHA-1 spreads keys over 16 random node IDs;
//   - digest bytes one anti-entropy round costs when every replica is in
//     sync;
//   - after one node crashes: maintenance rounds until every key again has
//     exactly r up-to-date replicas, and the in-process time that took.
//
// Run it once: go test -run XXX -bench KVRing16 -benchtime 1x ./internal/sim
func BenchmarkKVRing16(b *testing.B) {
	for b.Loop() {
		benchKVRing16(b)
	}
}

func benchKVRing16(b *testing.B) {
	const nodes, keys = 16, 100_000
	ctx := context.Background()
	cfg := template()
	kvcfg := kv.DefaultConfig()
	kvcfg.Replicas = 3
	c := NewKVCluster(16, cfg, kvcfg)
	if _, err := c.CreateKV(); err != nil {
		b.Fatal(err)
	}
	for range nodes - 1 {
		members := c.Members()
		if _, err := c.JoinKV(ctx, members[c.Net.Rand().IntN(len(members))].Self().Addr); err != nil {
			b.Fatal(err)
		}
		c.Round(ctx)
	}
	if _, err := c.Converge(ctx, 500, true); err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 100)
	members := c.Members()
	for i := range keys {
		k := c.KV(members[i%len(members)].Self().Addr)
		if _, err := k.KV.Put(ctx, fmt.Appendf(nil, "key-%06d", i), value, kv.Quorum, false); err != nil {
			b.Fatal(err)
		}
	}
	c.waitIdleAll(b)

	// Load per node.
	var held, primary []float64
	o := c.Oracle()
	for _, p := range o.Peers() {
		st := c.KV(p.Addr).Store
		held = append(held, float64(st.Stats().Keys))
		pred := o.Predecessor(p)
		n := 0
		_ = st.Scan(pred.ID, p.ID, func(_ store.Entry) bool { n++; return true })
		primary = append(primary, float64(n))
	}
	b.ReportMetric(mean(held), "keys/node-mean")
	b.ReportMetric(slices.Max(held)/mean(held), "keys/node-max/mean")
	b.ReportMetric(mean(primary), "primary/node-mean")
	b.ReportMetric(slices.Max(primary)/mean(primary), "primary/node-max/mean")

	// One anti-entropy round with every replica in sync.
	before := c.digestBytes()
	for _, p := range o.Peers() {
		if _, err := c.KV(p.Addr).KV.AntiEntropy(ctx); err != nil {
			b.Fatal(err)
		}
	}
	pulled := c.pulledAndPushed()
	b.ReportMetric(float64(c.digestBytes()-before)/float64(nodes), "digest-B/node/round")
	b.ReportMetric(float64(pulled), "in-sync-entries-moved")

	// Crash one node; repair until every key has exactly r replicas again.
	victim := o.Peers()[c.Net.Rand().IntN(nodes)]
	c.Crash(c.Net.Node(victim.Addr))
	start := time.Now()
	rounds := 0
	for ; rounds < 50; rounds++ {
		if c.fullyReplicated(keys, kvcfg.Replicas) {
			break
		}
		c.RepairRound(ctx)
		c.waitIdleAll(b)
	}
	if !c.fullyReplicated(keys, kvcfg.Replicas) {
		b.Fatalf("not re-replicated after %d rounds", rounds)
	}
	b.ReportMetric(float64(rounds), "rounds-to-rereplicate")
	b.ReportMetric(time.Since(start).Seconds(), "s-to-rereplicate-in-process")
}

func (c *KVCluster) waitIdleAll(tb testing.TB) {
	tb.Helper()
	for _, p := range c.Oracle().Peers() {
		if err := c.KV(p.Addr).KV.WaitIdle(context.Background()); err != nil {
			tb.Fatal(err)
		}
	}
}

func (c *KVCluster) digestBytes() (sum int64) {
	for _, p := range c.Oracle().Peers() {
		sum += c.KV(p.Addr).KV.Stats().DigestBytes
	}
	return sum
}

func (c *KVCluster) pulledAndPushed() (sum int64) {
	for _, p := range c.Oracle().Peers() {
		s := c.KV(p.Addr).KV.Stats()
		sum += s.Pulled + s.Pushed
	}
	return sum
}

// fullyReplicated reports whether the live members hold r copies of every
// key between them and each key's oracle replicas all hold it: with
// cleanup, exactly r replicas of each of the keys.
func (c *KVCluster) fullyReplicated(keys, r int) bool {
	var total int64
	for _, p := range c.Oracle().Peers() {
		total += c.KV(p.Addr).Store.Stats().Keys
	}
	if total != int64(keys*r) {
		return false
	}
	for i := 0; i < keys; i += 97 { // a sample: the count above covers the rest
		key := fmt.Appendf(nil, "key-%06d", i)
		for _, p := range c.Replicas(key) {
			if _, ok, _ := c.KV(p.Addr).Store.Get(key); !ok {
				return false
			}
		}
	}
	return true
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chordkv/chordkv/internal/chord"
	"github.com/chordkv/chordkv/internal/ring"
	"github.com/chordkv/chordkv/internal/store"
)

// Ring is what the node gauges read from chord; *chord.Node has it.
type Ring interface {
	State() chord.State
}

// Store is what the node gauges read from the local store; *store.Store
// has it. Both calls are cheap (counters kept on every write, and a scan of
// at most two digest buckets), so they run on every scrape.
type Store interface {
	Stats() store.Stats
	CountKeys(a, b ring.ID) (int64, error)
}

// WatchNode registers the gauges computed at scrape time from the node's
// routing state and store, and chordkv_node_info. version labels
// chordkv_node_info. Call it once.
func (m *Metrics) WatchNode(r Ring, s Store, version string) error {
	if err := m.reg.Register(newNodeCollector(r, s, version)); err != nil {
		return fmt.Errorf("metrics: register node gauges: %w", err)
	}
	return nil
}

// WatchLease registers chordkv_read_lease_held and
// chordkv_read_lease_reads_total, read at scrape time from held
// (kv.Node.LeaseHeld) and reads (kv.Stats.LeaseReads). Call it once.
func (m *Metrics) WatchLease(held func() bool, reads func() int64) error {
	c := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "chordkv_read_lease_reads_total",
		Help: "Quorum reads this node answered alone, from its own store, under its read lease (--read-lease).",
	}, func() float64 { return float64(reads()) })
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: register read lease counter: %w", err)
	}
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "chordkv_read_lease_held",
		Help: "1 while this node holds the read lease of its primary range and answers quorum reads of it alone (--read-lease); 0 otherwise.",
	}, func() float64 {
		if held() {
			return 1
		}
		return 0
	})
	if err := m.reg.Register(g); err != nil {
		return fmt.Errorf("metrics: register read lease gauge: %w", err)
	}
	return nil
}

// nodeCollector reads the gauges when scraped instead of keeping them up to
// date: routing state and store counts change on every write and pointer
// update, and are already kept by their owners.
type nodeCollector struct {
	ring    Ring
	store   Store
	version string

	storedKeys, storedBytes, successors, fingers, ringSize, info *prometheus.Desc
}

func newNodeCollector(r Ring, s Store, version string) *nodeCollector {
	return &nodeCollector{
		ring: r, store: s, version: version,
		storedKeys: prometheus.NewDesc("chordkv_stored_keys",
			"Live keys (tombstones excluded) in this node's store, by role: primary = in its own range (predecessor, self], replica = the rest.",
			[]string{"role"}, nil),
		storedBytes: prometheus.NewDesc("chordkv_stored_bytes",
			"Key and value bytes in this node's store, tombstones' keys included.", nil, nil),
		successors: prometheus.NewDesc("chordkv_successors",
			"Entries in this node's successor list (dead ones are dropped by stabilize).", nil, nil),
		fingers: prometheus.NewDesc("chordkv_fingers",
			"Distinct peers in this node's finger table.", nil, nil),
		ringSize: prometheus.NewDesc("chordkv_ring_size_estimate",
			"Ring members estimated from the spacing of this node's predecessor and successors (0 before joining).", nil, nil),
		info: prometheus.NewDesc("chordkv_node_info",
			"Always 1; labels identify the node: ring ID (hex), advertised address, chordkv version.",
			[]string{"id", "addr", "version"}, nil),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.storedKeys, c.storedBytes, c.successors, c.fingers, c.ringSize, c.info} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.ring.State()
	stats := c.store.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.info, 1, st.Self.ID.String(), st.Self.Addr, c.version)
	gauge(c.storedBytes, float64(stats.Bytes))
	gauge(c.successors, float64(len(st.Successors)))
	gauge(c.fingers, float64(len(st.Fingers)))
	gauge(c.ringSize, EstimateRingSize(st))
	primary, err := primaryKeys(st, stats, c.store)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.storedKeys, err)
		return
	}
	// Stats and the range count are read a moment apart; a write in
	// between must not make the difference negative.
	gauge(c.storedKeys, float64(primary), "primary")
	gauge(c.storedKeys, float64(max(stats.Keys-primary, 0)), "replica")
}

// primaryKeys counts the live keys in the range the node owns, as
// chord.Node.Owns defines it: (predecessor, self]; everything when alone;
// nothing before joining, or (but its own ID) while its predecessor is
// unknown.
func primaryKeys(st chord.State, stats store.Stats, s Store) (int64, error) {
	switch {
	case !st.Member:
		return 0, nil
	case st.Predecessor.IsZero() && len(st.Successors) == 0:
		return stats.Keys, nil
	case st.Predecessor.IsZero():
		return 0, nil
	}
	n, err := s.CountKeys(st.Predecessor.ID, st.Self.ID)
	if err != nil {
		return 0, fmt.Errorf("count keys in the primary range: %w", err)
	}
	return n, nil
}

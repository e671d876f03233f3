// Package sim runs the real internal/chord code over an in-memory network:
// thousands of nodes in one process, calls delivered synchronously, optional
// latency, message loss and partitions, and every random choice drawn from
// one seeded source so that a run is reproducible.
//
// It also owns the oracle that tests and `chordkv sim` check a ring against:
// the sorted list of live members, from which every correct successor,
// predecessor and finger follows, and the ring invariants of Zave's
// correctness proof.
package sim

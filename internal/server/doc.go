// Package server wires one chordkv node into a running daemon: it listens,
// serves the Chord and Admin services with gRPC health checking and server
// reflection, joins or creates a ring, keeps DATA_DIR/peers.json current so a
// restarted node finds its ring again, runs chord's maintenance loop, and on
// shutdown leaves the ring before it stops serving. With a metrics address
// it instruments the node through internal/metrics and serves /metrics
// (and, when asked, pprof) over HTTP until the store is closed.
//
// It owns process lifetime and wiring only; ring logic lives in
// internal/chord and the wire protocol in internal/transport.
package server

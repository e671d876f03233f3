// Package cli owns the chordkv command tree (cobra): the serve command that
// runs a node, and the client commands (ring, lookup, status) that talk to a
// running ring through its Admin service. It also owns what scripts depend
// on: CHORDKV_* environment variables, -o json shapes and exit codes
// (exit.go).
package cli

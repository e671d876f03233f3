// Package client owns client-side routing: learning the ring's members by
// walking successor pointers from any node (Walk), and a Router that keeps a
// snapshot of them, computes a key's owner the way the ring does, and sends
// each request straight to it over one pooled connection per member. A node
// that receives a request for a key it does not own still serves it (it
// forwards it) and says so with the chordkv-owner response header; the
// Router then refreshes its snapshot. Wire formats, retries across
// endpoints and output belong to the callers (internal/cli).
package client

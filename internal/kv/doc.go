// Package kv owns replication: where a key's replicas are, how a request
// reaches the key's owner, quorum writes and reads with read repair, the
// range hand-off when nodes join and leave, and the anti-entropy rounds that
// restore r replicas after a crash.
//
// The owner of a key is successor(SHA-1(key)); its replicas are the owner and
// the next r-1 nodes of the owner's successor list. Any node accepts any
// request: a node that does not own the key forwards it to the owner (or, if
// the owner does not answer, to the next replica), which coordinates it.
//
// Writes carry a Version (hybrid logical clock + writer ID) stamped by the
// coordinator; every replica merges by last-writer-wins, so applying a write
// twice, late or out of order is harmless, and the same single path (Apply)
// serves client writes, read repair, hand-off and anti-entropy.
//
// Anti-entropy compares per-bucket digests (see internal/store): each node,
// for its primary range (predecessor, self], asks its r-1 successors for
// their digests of that range and exchanges only the buckets that differ, so
// replicas that agree cost one small digest message per round.
//
// Like internal/chord, the package never touches the network: it talks to
// other nodes through the Peers interface and to the ring through Ring.
package kv

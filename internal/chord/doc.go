// Package chord owns ring membership and routing: a node's predecessor,
// successor list and finger table, the maintenance steps that repair them
// under churn, and iterative lookups.
//
// It follows the corrected maintenance protocol of Pamela Zave, "Reasoning
// about Identifier Spaces: How to Make Chord Correct" (IEEE TSE, 2017),
// rather than the 2001 pseudo-code:
//
//   - join copies a whole successor list from a live member, never just one
//     successor;
//   - stabilize skips dead successors, adopts its successor's predecessor only
//     when that node is live and closer, and rebuilds its list from the
//     successor it settled on;
//   - rectify (the corrected notify) replaces the predecessor only when it is
//     dead or the notifier lies between it and this node;
//   - dead entries are skipped, never trusted, and every remote call carries a
//     deadline.
//
// A graceful leave, which the paper does not cover, notifies the leaving
// node's predecessor and successor so that they splice it out at once; each
// node that hears of it keeps it out of its successor list for a few
// stabilize rounds, since rounds already in flight carry lists fetched
// before the splice, and readmits it at once if it notifies again.
//
// The package never touches the network. It talks to peers through the
// Transport interface: internal/transport implements it with gRPC,
// internal/sim in memory. Maintenance steps (Stabilize, FixFinger,
// CheckPredecessor) are plain methods that the daemon calls on tickers and a
// simulation calls in a seeded order, so the same code runs in both.
package chord

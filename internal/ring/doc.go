// Package ring owns chordkv's identifier space: 160-bit IDs on a circle of
// size 2^160, how addresses and keys hash onto it (SHA-1), and the interval
// arithmetic Chord reasons with. It is pure: no I/O, no locks, no clocks.
//
// Every interval on the circle is read clockwise. The paper's (a, b] and (a, b)
// are Between and BetweenRightIncl; when a == b both cover the whole circle
// except, for the open interval, a itself — the convention the Chord paper and
// Zave's corrected protocol both rely on for a ring of one node.
package ring

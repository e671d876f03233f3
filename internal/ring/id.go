package ring

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"math/big"
	"math/bits"
)

// Bits is the width of the identifier space.
const Bits = 160

// ID is a point on the identifier circle, big-endian.
type ID [20]byte

// HashAddr places a node on the circle: the SHA-1 of its advertised host:port.
// A node restarted with the same address therefore keeps its ID.
func HashAddr(addr string) ID { return sha1.Sum([]byte(addr)) }

// HashKey places a key on the circle.
func HashKey(key []byte) ID { return sha1.Sum(key) }

// String is the 40 lowercase hex characters operators see.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex characters, for logs.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// ParseID reads the 40-hex-character form printed by String.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("ring: id %q: want %d hex characters, got %d", s, 2*len(id), len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("ring: id %q: %w", s, err)
	}
	return id, nil
}

// FromBytes copies a 20-byte slice into an ID, as read off the wire.
func FromBytes(b []byte) (ID, error) {
	var id ID
	if len(b) != len(id) {
		return id, fmt.Errorf("ring: id is %d bytes, want %d", len(b), len(id))
	}
	copy(id[:], b)
	return id, nil
}

// Cmp orders IDs as unsigned integers (not around the circle).
func (id ID) Cmp(o ID) int {
	for i := range id {
		switch {
		case id[i] < o[i]:
			return -1
		case id[i] > o[i]:
			return 1
		}
	}
	return 0
}

// Between reports whether x lies strictly inside the clockwise interval (a, b).
// When a == b the interval is the whole circle except a.
func Between(a, x, b ID) bool {
	ab, ax := a.Cmp(b), a.Cmp(x)
	switch {
	case ab < 0: // no wrap: a < x < b
		return ax < 0 && x.Cmp(b) < 0
	case ab > 0: // wraps past zero: x > a or x < b
		return ax < 0 || x.Cmp(b) < 0
	default:
		return ax != 0
	}
}

// BetweenRightIncl reports whether x lies in the clockwise interval (a, b].
// When a == b it is the whole circle: a ring of one node owns every key.
func BetweenRightIncl(a, x, b ID) bool {
	return x == b || Between(a, x, b)
}

// AddPow2 returns id + 2^i mod 2^160: the start of finger i (0-based) in the
// Chord paper's table, whose entry i is successor(n + 2^i).
func (id ID) AddPow2(i int) ID {
	if i < 0 || i >= Bits {
		panic(fmt.Sprintf("ring: AddPow2(%d) out of range", i))
	}
	out := id
	byteIdx := len(out) - 1 - i/8
	carry := uint(1) << (i % 8)
	for b := byteIdx; b >= 0 && carry != 0; b-- {
		sum := uint(out[b]) + carry
		out[b] = byte(sum)
		carry = sum >> 8
	}
	return out
}

// Distance is the clockwise distance from a to b, (b - a) mod 2^160, as an ID.
func Distance(a, b ID) ID {
	var out ID
	var borrow uint
	for i := len(out) - 1; i >= 0; i-- {
		d := uint(b[i]) - uint(a[i]) - borrow
		out[i] = byte(d)
		borrow = (d >> 8) & 1
	}
	return out
}

// Big returns the ID as a non-negative integer, for statistics and tests.
func (id ID) Big() *big.Int { return new(big.Int).SetBytes(id[:]) }

// Log2 returns floor(log2(id)) or -1 for zero: the index of the highest set bit.
func (id ID) Log2() int {
	for i, b := range id {
		if b != 0 {
			return (len(id)-i-1)*8 + bits.Len8(b) - 1
		}
	}
	return -1
}

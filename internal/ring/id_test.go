package ring

import (
	"crypto/sha1"
	"math/big"
	"strings"
	"testing"
)

// id builds an ID whose last byte is b and all others zero, so that small
// rings can be written as numbers.
func id(b byte) ID {
	var x ID
	x[len(x)-1] = b
	return x
}

var maxID = func() ID {
	var x ID
	for i := range x {
		x[i] = 0xff
	}
	return x
}()

func TestBetween(t *testing.T) {
	tests := []struct {
		name    string
		a, x, b ID
		open    bool // x in (a, b)
		halfOpn bool // x in (a, b]
	}{
		{"inside", id(10), id(20), id(30), true, true},
		{"left edge excluded", id(10), id(10), id(30), false, false},
		{"right edge", id(10), id(30), id(30), false, true},
		{"before", id(10), id(5), id(30), false, false},
		{"after", id(10), id(40), id(30), false, false},
		{"wrap: above a", id(200), id(250), id(10), true, true},
		{"wrap: below b", id(200), id(5), id(10), true, true},
		{"wrap: zero", id(200), ID{}, id(10), true, true},
		{"wrap: max", id(200), maxID, id(10), true, true},
		{"wrap: outside", id(200), id(100), id(10), false, false},
		{"wrap: right edge", id(200), id(10), id(10), false, true},
		{"a == b: whole circle but a", id(7), id(8), id(7), true, true},
		{"a == b: x == a", id(7), id(7), id(7), false, true},
		{"a == b: far side", id(7), maxID, id(7), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Between(tt.a, tt.x, tt.b); got != tt.open {
				t.Errorf("Between = %v, want %v", got, tt.open)
			}
			if got := BetweenRightIncl(tt.a, tt.x, tt.b); got != tt.halfOpn {
				t.Errorf("BetweenRightIncl = %v, want %v", got, tt.halfOpn)
			}
		})
	}
}

// Chord paper §4.3: finger i of node n starts at (n + 2^i) mod 2^m
// (0-based here). Checked against big.Int arithmetic, including wrap-around.
func TestAddPow2MatchesModularArithmetic(t *testing.T) {
	mod := new(big.Int).Lsh(big.NewInt(1), Bits)
	for _, n := range []ID{{}, id(1), id(0xff), maxID, HashAddr("127.0.0.1:7001")} {
		for i := range Bits {
			want := new(big.Int).Add(n.Big(), new(big.Int).Lsh(big.NewInt(1), uint(i)))
			want.Mod(want, mod)
			if got := n.AddPow2(i).Big(); got.Cmp(want) != 0 {
				t.Fatalf("%s + 2^%d = %x, want %x", n, i, got, want)
			}
		}
	}
}

func TestDistance(t *testing.T) {
	mod := new(big.Int).Lsh(big.NewInt(1), Bits)
	pairs := [][2]ID{{id(1), id(9)}, {id(9), id(1)}, {id(5), id(5)}, {maxID, {}}, {{}, maxID}, {HashAddr("a"), HashAddr("b")}}
	for _, p := range pairs {
		want := new(big.Int).Sub(p[1].Big(), p[0].Big())
		want.Mod(want, mod)
		if got := Distance(p[0], p[1]).Big(); got.Cmp(want) != 0 {
			t.Errorf("Distance(%s, %s) = %x, want %x", p[0].Short(), p[1].Short(), got, want)
		}
	}
}

func TestHashIsSHA1(t *testing.T) {
	addr := "127.0.0.1:7001"
	if HashAddr(addr) != ID(sha1.Sum([]byte(addr))) {
		t.Fatal("HashAddr is not SHA-1 of the address")
	}
	s := HashAddr(addr).String()
	if len(s) != 40 || strings.ToLower(s) != s {
		t.Fatalf("String() = %q, want 40 lowercase hex characters", s)
	}
}

func TestParseIDRoundTrip(t *testing.T) {
	for _, x := range []ID{{}, maxID, HashKey([]byte("k"))} {
		got, err := ParseID(x.String())
		if err != nil || got != x {
			t.Fatalf("ParseID(%s) = %s, %v", x, got, err)
		}
	}
	for _, bad := range []string{"", "abc", strings.Repeat("g", 40), strings.Repeat("0", 41)} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}

func TestLog2(t *testing.T) {
	tests := []struct {
		x    ID
		want int
	}{{ID{}, -1}, {id(1), 0}, {id(2), 1}, {id(0x80), 7}, {maxID, 159}}
	for _, tt := range tests {
		if got := tt.x.Log2(); got != tt.want {
			t.Errorf("Log2(%s) = %d, want %d", tt.x.Short(), got, tt.want)
		}
	}
}

func FuzzParseID(f *testing.F) {
	f.Add(HashAddr("x").String())
	f.Add("")
	f.Add(strings.Repeat("Z", 40))
	f.Fuzz(func(t *testing.T, s string) {
		x, err := ParseID(s)
		if err != nil {
			return
		}
		if !strings.EqualFold(x.String(), s) {
			t.Fatalf("ParseID(%q) = %s", s, x)
		}
	})
}

func FuzzBetween(f *testing.F) {
	f.Add([]byte{1}, []byte{2}, []byte{3})
	f.Fuzz(func(t *testing.T, a, x, b []byte) {
		var ia, ix, ib ID
		copy(ia[:], a)
		copy(ix[:], x)
		copy(ib[:], b)
		// x in (a, b) exactly when 0 < dist(a, x) < dist(a, b), with a
		// zero dist(a, b) meaning a full turn.
		dx, db := Distance(ia, ix).Big(), Distance(ia, ib).Big()
		if db.Sign() == 0 {
			db = new(big.Int).Lsh(big.NewInt(1), Bits)
		}
		want := dx.Sign() > 0 && dx.Cmp(db) < 0
		if got := Between(ia, ix, ib); got != want {
			t.Fatalf("Between(%s, %s, %s) = %v, want %v", ia, ix, ib, got, want)
		}
	})
}

func BenchmarkBetween(b *testing.B) {
	a, x, c := HashAddr("a"), HashAddr("x"), HashAddr("c")
	for b.Loop() {
		Between(a, x, c)
	}
}

func BenchmarkHashKey(b *testing.B) {
	key := []byte("user:12345")
	for b.Loop() {
		HashKey(key)
	}
}

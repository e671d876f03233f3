package testnet

import (
	"net"
	"strconv"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"32768\t60999\n", 32768, false},
		{"1024 65535", 1024, false},
		{"", 0, true},
		{"32768", 0, true},
		{"a 60999", 0, true},
		{"0 60999", 0, true},
		{"70000 80000", 0, true},
		{"1 2 3", 0, true},
	}
	for _, tt := range tests {
		got, err := parsePortRange(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parsePortRange(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParsePortRange(f *testing.F) {
	f.Add("32768\t60999\n")
	f.Add("1 65535")
	f.Fuzz(func(t *testing.T, s string) {
		low, err := parsePortRange(s)
		if err == nil && (low < 1 || low > 65535) {
			t.Fatalf("parsePortRange(%q) = %d without an error", s, low)
		}
	})
}

// The addresses are distinct across calls, lie below the ephemeral range,
// and are free: a test can listen on each.
func TestAddrsAreFreeAndNeverRepeat(t *testing.T) {
	seen := map[string]bool{}
	end := ephemeralLow()
	for range 20 {
		for _, addr := range Addrs(t, 5) {
			if seen[addr] {
				t.Fatalf("%s handed out twice", addr)
			}
			seen[addr] = true
			host, p, err := net.SplitHostPort(addr)
			if err != nil || host != "127.0.0.1" {
				t.Fatalf("address %q: %v", addr, err)
			}
			port, _ := strconv.Atoi(p)
			if port < lowestPort || (end-lowestPort >= minPorts && port >= end) {
				t.Errorf("port %d outside [%d, %d)", port, lowestPort, end)
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("listen on %s: %v", addr, err)
			}
			l.Close()
		}
	}
}

// A port somebody holds is skipped.
func TestAddrsSkipTakenPorts(t *testing.T) {
	next := Addr(t)
	_, p, _ := net.SplitHostPort(next)
	port, _ := strconv.Atoi(p)
	held, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
	if err != nil {
		t.Skipf("port %d taken already: %v", port+1, err)
	}
	defer held.Close()
	got := Addr(t)
	if got == held.Addr().String() {
		t.Fatalf("handed out %s, which is being listened on", got)
	}
}

// Package testnet hands tests 127.0.0.1 addresses that the kernel does not
// hand to anybody else meanwhile.
//
// A port a test learns by listening on port 0 and closing the listener
// comes from the kernel's ephemeral range, the same range every outgoing
// connection and every other port-0 listener on the machine draws from. In
// the moment before a node binds it, or while a killed node is down before
// its restart, it can go to another test package's node, or become the
// local end of some gRPC connection: the node then cannot bind, or a "dead"
// address answers. CI saw both. Addresses from this package lie below the
// ephemeral range, where the kernel never picks a port on its own, and no
// two calls in one process return the same one.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowestPort is the bottom of the ports handed out: above the well-known
// and the usual development services' ports (Redis, Prometheus, a `make
// run` ring).
const lowestPort = 10000

// minPorts is the fewest ports handed out from.
const minPorts = 1000

// defaultEphemeralLow is Linux's default lower bound of the ephemeral range,
// used where /proc does not tell.
const defaultEphemeralLow = 32768

var picker struct {
	sync.Mutex
	next     int // the next port to try; 0 before the first call
	low, end int // ports tried lie in [low, end)
}

// Addrs returns n distinct 127.0.0.1 addresses, each free when picked
// (listened on and closed again), none returned before in this process. A
// process starts at a random point of the range, so that test processes
// running at the same time rarely try the same ports.
func Addrs(t testing.TB, n int) []string {
	t.Helper()
	picker.Lock()
	defer picker.Unlock()
	if picker.next == 0 {
		picker.low, picker.end = lowestPort, ephemeralLow()
		if picker.end-picker.low < minPorts {
			// A machine whose ephemeral range starts low: these ports
			// are no safer than port 0's, but still never repeat.
			picker.end = picker.low + minPorts
		}
		picker.next = picker.low + rand.IntN(picker.end-picker.low)
	}
	addrs := make([]string, 0, n)
	for tried := 0; len(addrs) < n; tried++ {
		if tried == picker.end-picker.low {
			t.Fatalf("testnet: no free port left in %d to %d", picker.low, picker.end-1)
		}
		port := picker.next
		picker.next++
		if picker.next == picker.end {
			picker.next = picker.low
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken by someone else
		}
		l.Close()
		addrs = append(addrs, addr)
	}
	return addrs
}

// Addr is one address from Addrs. Nothing listens on it: as the address of
// a dead node, it refuses connections at once.
func Addr(t testing.TB) string {
	t.Helper()
	return Addrs(t, 1)[0]
}

// Port is the port of one address from Addrs, as a string (for docker's
// port mappings).
func Port(t testing.TB) string {
	t.Helper()
	_, port, err := net.SplitHostPort(Addr(t))
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// ephemeralLow is the lowest port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeralLow
	}
	low, err := parsePortRange(string(b))
	if err != nil {
		return defaultEphemeralLow
	}
	return low
}

// parsePortRange reads the lower bound of "low<whitespace>high".
func parsePortRange(s string) (int, error) {
	fields := strings.Fields(s)
	if len(fields) != 2 {
		return 0, fmt.Errorf("port range %q: want two numbers", s)
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil || low < 1 || low > 65535 {
		return 0, fmt.Errorf("port range %q: bad lower bound", s)
	}
	return low, nil
}

// Package testnet holds network helpers shared by kvtrack's tests and by
// the simulator (internal/sim), which binds loopback endpoints too.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
)

// Ports handed out lie below the kernel's ephemeral range: a port taken
// from that range is free only until some outgoing connection (a ZMQ
// connect, a Redis client, another package's test binary) is given it as its
// local port, which happened on a busy CI machine between a test's check and
// its bind. Below the range only an explicit bind can take a port, and the
// random choice keeps test binaries running side by side apart.
const (
	lowestPort = 10000
	// defaultEphemeralStart is Linux's default when the range can't be read.
	defaultEphemeralStart = 32768
)

// ephemeralStart returns the first port of the kernel's ephemeral range.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeralStart
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= lowestPort+1000 {
		return defaultEphemeralStart
	}
	return lo
}

// free reports whether each of ports can be listened on at 127.0.0.1 now.
func free(ports ...int) bool {
	for _, p := range ports {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// freeRun returns the first of n consecutive ports that were free a moment
// ago, all outside the ephemeral range.
func freeRun(t testing.TB, n int) int {
	t.Helper()
	p, err := run(n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// handedOut holds every port this process has been given: a port chosen
// and not yet bound looks free to the next choice, and a simulation
// chooses all of a run's ports before it binds any.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

func run(n int) (int, error) {
	top := ephemeralStart() - n
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
next:
	for range 1000 {
		p := lowestPort + rand.IntN(top-lowestPort)
		ports := make([]int, n)
		for i := range ports {
			ports[i] = p + i
			if handedOut.ports[ports[i]] {
				continue next
			}
		}
		if free(ports...) {
			for _, q := range ports {
				handedOut.ports[q] = true
			}
			return p, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports on 127.0.0.1 between %d and %d", n, lowestPort, top)
}

// Port is FreePort for code outside tests: a TCP port on 127.0.0.1, outside
// the ephemeral range, that was free a moment ago.
func Port() (int, error) { return run(1) }

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a test that must name an endpoint before something binds it (a ZMQ bind
// endpoint, a server given its address on the command line).
func FreePort(t testing.TB) int {
	t.Helper()
	return freeRun(t, 1)
}

// FreePortPair returns a port on 127.0.0.1 that, with its successor, was
// free a moment ago: the endpoints of data-parallel ranks 0 and 1, since
// rank r uses port + r.
func FreePortPair(t testing.TB) int {
	t.Helper()
	return freeRun(t, 2)
}

// Package testnet holds network helpers shared by kvtrack's tests.
package testnet

import (
	"fmt"
	"net"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a test that must name an endpoint before something binds it (a ZMQ bind
// endpoint, a server given its address on the command line).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreePortPair returns a port on 127.0.0.1 that, with its successor, was
// free a moment ago: the endpoints of data-parallel ranks 0 and 1, since
// rank r uses port + r.
func FreePortPair(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := FreePort(t)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1)); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no two consecutive free ports on 127.0.0.1")
	return 0
}

package redis_test

import (
	"testing"

	"github.com/kvtrack/kvtrack/internal/testnet"
	"github.com/kvtrack/kvtrack/internal/testredis"
)

// server is a redis-server process owned by one test (internal/testredis).
type server = testredis.Server

// startServer starts a redis-server on a free loopback port. Without
// redis-server on PATH it skips, unless CI is set: there it fails.
func startServer(t testing.TB) *server {
	t.Helper()
	return testredis.StartServer(t, testredis.Options{})
}

// servers are the server programs the conformance suite and the model
// tests run against, each as a subtest: Redis, and Valkey. A missing
// valkey-server fails its subtest, naming `make deps`, unless
// KVTRACK_SKIP_VALKEY=1 (internal/testredis).
var servers = []struct{ name, binary string }{
	{"redis", "redis-server"},
	{"valkey", "valkey-server"},
}

// onEachServer runs f as a subtest per server program, on a server of that
// program started for the subtest.
func onEachServer(t *testing.T, f func(t *testing.T, srv *server)) {
	t.Helper()
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			f(t, testredis.StartServer(t, testredis.Options{Binary: s.binary}))
		})
	}
}

func freePort(t testing.TB) int { return testnet.FreePort(t) }

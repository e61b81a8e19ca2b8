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

func freePort(t testing.TB) int { return testnet.FreePort(t) }

// Package testredis starts private redis-server processes for tests that
// need a real Redis.
package testredis

import "testing"

// Start runs a redis-server on a free loopback port, without persistence,
// stopped when the test ends, and returns its host:port. Without
// redis-server on PATH it skips the test, except in CI (CI set), where it
// fails: CI installs the Debian package.
func Start(t testing.TB) string {
	t.Helper()
	return StartServer(t).Addr
}

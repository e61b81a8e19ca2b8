// Package testwait is how kvtrack's tests wait: for a condition, never for
// the clock. A condition is polled until it holds; only the test binary's
// own deadline (go test -timeout) bounds the wait, so a test that passes on
// a quiet machine also passes on a loaded one, just later. When the deadline
// comes near, the test fails naming what it waited for, before go test's
// panic would hide it.
package testwait

import (
	"context"
	"testing"
	"time"
)

// margin is left before the test binary's deadline to report the failure.
const margin = 20 * time.Second

// fallback bounds a wait when the binary has no deadline (-timeout 0).
const fallback = 10 * time.Minute

// deadline returns when waiting must give up.
func deadline(t testing.TB) time.Time {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			return dl.Add(-margin)
		}
	}
	return time.Now().Add(fallback)
}

// For polls cond until it holds, failing the test with what when the test
// binary's deadline comes near or as soon as the test has failed.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	end := deadline(t)
	for delay := time.Millisecond; !cond(); delay = min(2*delay, 50*time.Millisecond) {
		if t.Failed() {
			// Something the condition depends on has already reported
			// failure (a server that exited, a goroutine's error): waiting
			// on would only spend the time of every test still to run.
			t.Fatalf("stopped waiting for %s: the test has already failed", what)
		}
		if time.Now().After(end) {
			t.Fatalf("gave up waiting for %s at the test binary's deadline", what)
		}
		time.Sleep(delay)
	}
}

// Context returns a context that ends when the test does, or when the test
// binary's deadline comes near: for calls that take a context and should
// wait as long as the test may.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithDeadline(context.Background(), deadline(t))
	t.Cleanup(cancel)
	return ctx
}

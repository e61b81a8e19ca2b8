//go:build !linux

// Package threadcpu reads the calling thread's CPU clock, for benchmarks
// that must tell time a piece of code ran from time the OS spent running
// something else.
package threadcpu

import "time"

// Now returns 0: there is no per-thread CPU clock here, and callers leave
// out what needs one.
func Now() time.Duration { return 0 }

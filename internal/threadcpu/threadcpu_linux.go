// Package threadcpu reads the calling thread's CPU clock, for benchmarks
// that must tell time a piece of code ran from time the OS spent running
// something else. Callers lock their goroutine to its thread
// (runtime.LockOSThread) for the readings to mean anything.
package threadcpu

import (
	"syscall"
	"time"
	"unsafe"
)

// clockThreadCPUTime is Linux's CLOCK_THREAD_CPUTIME_ID.
const clockThreadCPUTime = 3

// Now returns the CPU time the calling thread has used, or 0 if the clock
// cannot be read. Unlike wall time it does not advance while the thread
// waits for a CPU.
func Now() time.Duration {
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

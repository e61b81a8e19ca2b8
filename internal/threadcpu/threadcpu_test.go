package threadcpu_test

import (
	"runtime"
	"testing"

	"github.com/kvtrack/kvtrack/internal/threadcpu"
)

// The clock advances with work the thread does, and not backwards.
func TestNowAdvancesWithWork(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no thread CPU clock on", runtime.GOOS)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadcpu.Now()
	if before <= 0 {
		t.Fatalf("Now() = %v, want a positive CPU time", before)
	}
	sum := 0
	for i := range 1 << 20 {
		sum ^= i * i
	}
	if after := threadcpu.Now(); after <= before {
		t.Errorf("Now() = %v after a million multiplications, want more than %v (sum %d)", after, before, sum)
	}
}

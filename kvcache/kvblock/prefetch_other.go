//go:build !amd64

package kvblock

// prefetch is a no-op where kvblock has no prefetch instruction; the walk
// then relies on the hardware's own prefetching.
func prefetch(*uint64) {}

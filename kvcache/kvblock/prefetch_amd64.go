package kvblock

// prefetch asks the CPU to bring the cache line holding addr into cache
// without waiting for it, so that several of the walk's cache misses
// overlap. It never faults, whatever addr points to.
//
//go:noescape
func prefetch(addr *uint64)

package redis

// HoldFolds stops (or, with false, lets again) ix's folds of its write
// log, so that a test can score ops no fold has applied yet.
func HoldFolds(ix *Index, hold bool) { ix.wlog.held.Store(hold) }

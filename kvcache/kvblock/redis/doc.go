// Package redis is a kvblock.Index kept in Redis (or Valkey), so that several
// EPP replicas can share one index instead of each holding its own.
//
// It is built for Redis's cost model, where round trips dominate: every
// operation on a prompt is one call to a server-side Lua script (EVALSHA,
// resending the script only when the server has lost it): Add and Remove of
// a prompt's keys, and Score, which walks the keys on the server (reading
// blocks with MGET, 128 per call) and returns only the per-candidate
// results. Values are binary and small: one string per block of 7-byte
// (pod id, tier id, reference count) records, and one sorted set per pod
// naming its entries, so ClearPod needs no scan and entries not stored again
// within Config.TTL expire. scripts.go documents the layout.
//
// Scores equal the in-memory index's, to the bit: the weighted sum is
// computed in the same order with the same float64 arithmetic.
//
// The price of sharing: Score's server time grows with the records it
// visits, every (key, pod) record of the keys it walks, candidate or not, at
// a fraction of a microsecond each in Lua; a prompt whose prefix 100 pods
// hold costs milliseconds (BenchmarkRedisIndexScore) where the in-memory
// index costs microseconds. And the index is unavailable when Redis is.
// Failures are returned, counted in kvtrack_redis_errors_total, and never
// retried blindly; a failed Score yields zero scores ("no data").
//
// KV-cache groups: Index does not implement kvblock.GroupIndex. The event
// path stores a hybrid model's groups (sliding-window or Mamba layers next
// to full attention) through Add, merged: a block stays while any group
// holds it (each group's store takes its own reference), and Score counts
// the longest prefix held by any group, as for a model of one
// full-attention group. That can over-predict a hybrid model's hit where
// a sliding-window or Mamba group has lost blocks full attention still
// holds; the in-memory index computes it exactly.
//
// An Index is safe for concurrent use by any number of goroutines, and any
// number of Index values, in one process or many, may share one server and
// key prefix. Every script runs atomically on the server, so concurrent
// writers never see each other's partial updates.
package redis

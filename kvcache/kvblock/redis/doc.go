// Package redis is a kvblock.Index kept in Redis (standalone, with
// replicas, or Redis Cluster) or Valkey, so that several EPP replicas can
// share one index instead of each holding its own.
//
// # Layout
//
// A block is one string of 5-byte records, <pod id:3><tier id:1><epoch:1>,
// one per reference (scripts.go has the whole layout). Add appends a record
// (one APPEND per key inside a script, which also counts entries and logs
// the batch for the pod); Score reads the prompt's blocks with one MGET and
// walks them in the client: the longest run of keys from the first that
// each candidate holds, stopping once every candidate has missed. Pod and
// tier names are interned to small ids that never change, cached by every
// client under the registry's generation (which a server that lost its
// data changes).
//
// Scores equal the in-memory index's: the conformance suite
// (kvblock/indextest) runs against a standalone server, several groups on
// one server, a cluster of three masters with replicas, and Valkey where
// valkey-server is installed.
//
// # Redis Cluster
//
// Blocks are spread over Config.Cluster.Groups groups by key; every key of
// a group carries the group's hash tag, so a group lives in one slot and one
// script updates it atomically. Add sends one script call per group the
// batch touches, Score one MGET per group, and both pipeline them per node:
// one round trip per node involved, in parallel (3 for a 512-key prompt on
// 3 masters with the default 48 groups). Standalone has one group, so every
// operation on a prompt is one round trip. When a master fails, operations
// on its groups fail (Score then returns zero scores and the error) and the
// client reloads the slot map; after the replica's promotion they succeed
// again. Writes the old master acknowledged but had not replicated are lost
// with it, as Redis Cluster's asynchronous replication allows: Add and
// Remove report every failure, and a caller that saw one resyncs the pod
// (ClearPod, then its current blocks).
//
// # Why this layout: the alternatives measured
//
// 512 keys, 100 pods where pod p holds the first (p+1)% of the prompt (the
// worst case: every candidate survives a long way), local redis-server
// 7.0, on a 2-core machine shared with other work (load average 10-30, so
// wall times swing by several times; server-us, the command time INFO
// commandstats reports, swings less). Interleaved in one session:
//
//	layout                                              score wall / server      add 512 keys (server)
//	records in the block, walked by a Lua script        6.5-36 ms / 33 ms (*)    6.6 ms
//	 (the previous design: every (key, pod) visited
//	 in Lua, 0.1-1 us each)
//	records appended per reference, MGET + client walk  0.5-3 ms / 57-160 us     0.8-1.6 ms
//	 (this package)
//
//	(*) 113 ms at the busiest moment.
//
// Reading 512 values of 200 bytes, the shapes of the other options:
//
//	one MGET                                   0.42-1.06 ms wall
//	512 GETs, pipelined                        1.16 ms
//	512 HGETs on hash buckets, pipelined       1.88 ms (listpack buckets would cut memory for
//	                                            one-pod keys, but Add then needs HGET+HSET per key)
//	one script: MGET, concatenated to one reply 1.2-1.65 ms (Lua string work costs more than the
//	                                            client's reply parsing it saves)
//	512 SETBITs (pod bitsets), pipelined       1.53 ms, against 1.15 ms for 512 APPENDs; and a
//	                                            bitset grows with the highest pod id, 125 bytes
//	                                            per key in a 1,000-pod fleet even for one holder
//
// Redis Functions run the same Lua engine as EVAL: they change how scripts
// are loaded, not what a call costs, so they were not pursued.
//
// Memory (BenchmarkRedisIndexMemory, INFO used_memory over 1M entries):
// 130 B per entry when every block has one pod (the per-key overhead of a
// Redis string, ~100 B, dominates), 42 B with 4 pods per block, 27 B with
// 16.
//
// # Failures
//
// Failures are returned, counted in kvtrack_redis_errors_total, and never
// retried blindly (the write scripts count references); a failed Score
// yields zero scores ("no data"). kvtrack_redis_round_trips_total counts
// round trips per operation (per node in a cluster) and
// kvtrack_redis_bytes_per_entry the memory per entry as of the last
// Index.Memory call.
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
// number of Index values, in one process or many, may share one server (or
// cluster) and key prefix. Every script runs atomically on its group, so
// concurrent writers never see each other's partial updates of a group.
package redis

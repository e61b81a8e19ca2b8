// Package redis is a kvblock.Index kept in Redis (standalone, with
// replicas, or Redis Cluster) or Valkey, so that several EPP replicas can
// share one index instead of each holding its own.
//
// # Layout
//
// Blocks are packed into Config.Buckets strings (default 65536), picked by
// the low bits of the block's key: a bucket is a run per block, <key:8>
// <count:2> and then 5-byte records <pod id:3><tier id:1><epoch:1>, one per
// reference (scripts.go has the whole layout). A bucket shares the ~70-100
// bytes Redis spends on every top-level key among its blocks. Add is one
// script call per group, which per key reads the bucket (GET), inserts the
// record and writes it back (SET), counts entries and logs the batch for
// the pod; Score reads the prompt's buckets with one MGET, finds each
// block's run in its bucket and walks them in the client: the longest run
// of keys from the first that each candidate holds, stopping once every
// candidate has missed. Pod and tier names are interned to small ids that
// never change, cached by every client under the registry's generation
// (which a server that lost its data changes).
//
// Size Buckets at about the blocks the index holds divided by 16 (1M
// blocks: the default). Fewer buckets cost a score more bytes read (each
// bucket read carries its other blocks: 16 one-pod blocks are ~240 bytes)
// and the write scripts more bytes copied; more buckets cost memory, up to
// the per-block layout's when a bucket holds a single block. Every replica
// sharing an index must use the same count; the first write of a client
// with another one fails, naming it. An index written by an older version
// (a string per block, "<prefix>{g}b<key>") is not read: give the new one
// another redis.keyPrefix, or delete the old keys.
//
// # Expiry
//
// Config.TTL drops an entry that has not been stored again for that long;
// WithTierTTL gives one tier (kvcache: speculative entries, on
// speculative.ttl) a TTL of its own, so that the speculative entries of a
// replica that died before removing them go after seconds rather than the
// index's hour. Expiry is coarse and driven by writes: a pod's batches are
// logged per epoch (a quarter of the TTL), and every Add drains expired
// logs of its group (about twice the keys it stores), dropping the pod's
// entries stored in the logged epoch and not since. An entry thus goes
// between TTL and 1.25 TTL after its last store, at the first write by any
// replica to its group after that; an index nobody writes to keeps its
// entries (in a cluster, a 512-key prompt writes to every group). An Add
// expires before it stores, and stores all its keys of a group or none (a
// block holds at most 65,535 references; an Add past that fails whole).
// Records carry their epoch in one byte, which orders epochs 128 apart at
// most (speculative entries' 2.5 s epochs: 5 minutes); a log older than
// that, left by a longer pause in writes, is judged against the current
// epoch: the pod's entries of a key stay if one was stored in the last
// few epochs (or 256n epochs before that, which a byte cannot tell), and
// are then checked again one TTL later.
//
// Scores equal the in-memory index's: the conformance suite
// (kvblock/indextest) runs against a standalone server, several groups on
// one server, a cluster of three masters with replicas, and a standalone
// valkey-server (8.0, from Debian 12's bookworm-backports; `make deps`
// installs it, and its tests fail without it unless KVTRACK_SKIP_VALKEY=1).
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
//	 (a string per block)
//	the same records, packed into buckets (this package) 1.5 ms / 89 us          1.55 ms
//	 (figures of the benchstat run below)
//
//	(*) 113 ms at the busiest moment.
//
// Memory, the bucket layout against the per-block one it replaced
// (BenchmarkRedisIndexMemory: INFO used_memory growth over 1M (block, pod)
// entries, redis-server 7.0, jemalloc):
//
//	layout                                  1 pod per block   4 pods   16 pods
//	a string per block (APPEND per record)   130 B             42 B     26 B
//	buckets, 16 one-pod blocks per bucket    32 B              24 B     22 B
//	 (the default 65536 buckets)
//	buckets sized for 64 blocks each          28 B
//	buckets sized for 1 block each           146 B
//
// A one-pod entry in a bucket is its run (15 bytes), its share of the
// pod's log (8) and of the bucket's key (~5 at 16 blocks per bucket). The
// first version of the buckets APPENDed new blocks, which leaves a string
// up to twice its length (Redis grows it greedily): 40 B per entry; a new
// block is now SET with the bucket's whole value.
//
// Old against new (benchstat medians, 6 interleaved runs of each, same
// session, load average 6-9; server is INFO commandstats time; "~" is no
// significant difference at p < 0.05):
//
//	                                 wall (old -> new)        server (old -> new)
//	score 512 keys, 100 pods          1.28 ms -> 1.50 ms (~)   98 us -> 89 us (~)
//	 same, 1M other blocks stored     0.9-1.6 ms               124-295 us (317 KB read, from 187)
//	add 512 new keys                  1.57 ms -> 1.53 ms (~)   1.29 ms -> 1.55 ms (+20%)
//	remove 512 keys                   0.86 ms -> 0.84 ms (~)   0.75 ms -> 0.84 ms (~)
//
// Add costs more server time because a bucket must be read to find the
// block in it: Add went from one call per key (APPEND) to two (GET, SET),
// and both copy the bucket's bytes through Lua (the APPEND version of the
// buckets measured +87% for add and +69% for remove in an earlier session
// at load 8-14). Add's target of 0.5 ms for 512
// keys is out of reach for any layout that does per-key work in a script
// on this machine: a script that only calls PING 512 times takes 0.45-0.5
// ms of server time, 512 HSETNX calls 1.7 ms, and a script given the 512
// bucket names as KEYS spends 1 ms before its first line (so the scripts
// name the buckets themselves, 0.2 ms). Native multi-key writes (MSET)
// would need the buckets read first, in another round trip, and
// WATCH/MULTI to stay atomic, which 512 buckets per add make conflict
// across concurrent writers almost always.
//
// Hash buckets (HSET field=block in a listpack hash, 17 bytes per one-pod
// block, HSETNX one call for a new block) would be the most compact, but
// Score would need one HGET per key: 512 pipelined HGETs cost 1.88 ms, and
// in a script each is a call (~1 us here), against one native MGET.
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

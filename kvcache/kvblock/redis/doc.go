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
// script call per group, which reads every bucket the batch touches with
// one MGET (the client names them), inserts the records, writes the
// buckets back with one MSET, counts entries and logs the batch for the
// pod; Score reads the prompt's buckets with one MGET, finds each
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
// one server and a cluster of three masters with replicas, each of Redis
// and of Valkey (valkey-server 8.0, from Debian 12's bookworm-backports;
// `make deps` installs it, and its tests fail without it unless
// KVTRACK_SKIP_VALKEY=1); the failover and TLS tests run on both too.
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
// block in it, and both the read and the new value pass the bucket's bytes
// through Lua (the APPEND version of the buckets measured +87% for add and
// +69% for remove in an earlier session at load 8-14). "Add: where its
// time goes" below has the current figures.
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
// # Add: where its time goes
//
// Add's target, 0.5 ms for 512 keys, is not met: 1.2-1.5 ms wall, 1.1-1.4
// ms of server time. Variants of the add script, each run 300 times on 512
// fresh keys with 150k blocks stored (redis-server 7.0.15, three sessions
// at load average 2-4; valkey-server 8.0.1 within 15% of it in every
// line), server time per call:
//
//	the script's arguments only, returning at once     13-25 us
//	 + splitting the 512 keys (string.sub)             +55-65 us
//	 + naming their buckets in Lua                     +160-310 us
//	   (receiving the names as arguments instead:      +65-110 us)
//	 + one MGET of the 512 buckets                     +290-450 us
//	   (512 GETs instead:                              +360 us)
//	 + one MSET of the 512 buckets                     +70-245 us
//	the whole add (locating blocks, making values)     1.0-1.36 ms
//
// So the cost is per value crossing into Lua, not per redis.call: one MGET
// costs what 512 GETs do. perf on the server during BenchmarkRedisIndexAdd
// puts 21-31% of its time in the string hash of Redis's Lua, which hashes
// every byte of every string a script makes (each bucket value read, each
// value built), 7-9% in dictFind (the keyspace) and 7% in the allocator.
// A round trip of an empty script costs 130-180 us of wall time here.
// Hence this package's add reads and writes the buckets with one MGET and
// one MSET (and one DEL for buckets left empty, in chunks of 4000 names:
// unpack's limit), expiry and ClearPod drain the same way, and the client
// names the buckets. Interleaved with the previous GET and SET per bucket
// (3 to 5 runs of each in three sessions, load average 1-4.4):
//
//	                        wall (old -> new)                  server (old -> new)
//	add 512 new keys         1.26-2.00 -> 1.18-1.52 ms          1.29-2.04 -> 1.08-1.41 ms
//	                         (medians -13% to +6%)              (medians -4% to -21%)
//	 same, 1M blocks stored  1.73-2.19 -> 1.72-1.92 ms          1.85-2.31 -> 1.71-1.91 ms
//	remove 512 keys          0.71-1.05 -> 0.59-0.86 ms          0.72-1.01 -> 0.55-0.79 ms
//	score 512 x 100 pods     0.62-0.98 -> 0.63-0.85 ms (~)      62-125 -> 73-120 us (~)
//	 same, 1M blocks stored  0.86-1.92 -> 1.00-1.33 ms (~)      109-452 -> 122-258 us (~)
//	memory, 1 pod per block  32.4 -> 32.5 B/entry (16 pods: 22.5)
//
// Add's cost grows with the buckets' length, whose bytes are hashed twice
// (BenchmarkRedisIndexAddFilled: 16 blocks per bucket). The alternatives
// measured:
//
//	WATCH the 512 buckets, MGET them natively,  2.0 ms wall: WATCH of 512 keys alone
//	 make the values in Go, MULTI/MSET/EXEC      costs 1 ms of server time (native
//	                                             MGET 190 us, MSET 100 us)
//	APPEND or SETRANGE a new block, no read      both grow the string greedily: a 100-byte
//	 (the existence check still reads)           bucket after six 15-byte appends holds
//	                                             304 bytes against 176 SET whole; 40 B
//	                                             per entry in the memory benchmark
//	a version key per group checked by the      every concurrent write to the group
//	 script, values made in Go (2 round trips)   conflicts, and the values sent are
//	                                             hashed by Lua all the same
//	HSETNX per block in hash buckets            1.7 ms for 512 calls, and Score then
//	                                             needs one HGET per key (below)
//
// A script that only calls PING 512 times takes 0.45-0.5 ms of server
// time, and one given the 512 bucket names as KEYS spends 1 ms before its
// first line (as ARGV they cost 65-110 us).
//
// # Add: the floor
//
// The server times above are INFO commandstats, which counts a command a
// script runs both inside the script's time and on its own line: add's
// and remove's figures include their MGET twice (170-250 us). The
// benchmarks now report the server main thread's CPU time (INFO cpu),
// which counts everything once, request parsing and reply writing
// included. On a quiet machine (load average under 1, redis-server 7.0.15,
// three runs of each):
//
//	                                   wall            server (CPU)
//	add 512 new keys                   1.39-2.16 ms    1.30-1.42 ms
//	the floor (BenchmarkRedisAddFloor)  1.05-1.29 ms    0.51-0.60 ms
//	remove 512 keys                    0.74-0.86 ms    0.66-0.72 ms
//	score 512 keys, 100 pods           0.53-0.57 ms    135-144 us
//	 same, 1M other blocks stored      0.76-0.82 ms    213-235 us
//
// The floor is the least a synchronous add of this layout does: one
// native MGET of the 512 buckets and one native MSET writing them back
// with the new runs, and nothing else (no Lua, no counters, no log, no
// guard against a concurrent writer). It alone takes the server 0.5-0.6
// ms. Any layout that places blocks by key touches about as many keys per
// add (a pipelined GET per bucket costs more, and a hash field costs about
// what a key does: HMGET of 512 fields of one 65,536-field hash took 225 us
// of server time, MGET 255 us), and the two round trips with go-redis
// encoding and parsing 512 values each way add 0.5-0.7 ms of wall time.
// So the 0.5 ms target for a 512-key add is out of reach of any
// synchronous add on this machine, with or without Lua (the add done in
// Go, WATCH on a version key, MGET, then MULTI/MSET/EXEC, took 1.54 ms of
// wall time). What Lua adds on top of the floor (0.7-0.8 ms) is, under
// perf, mostly Lua's string interning: 29% of the server's time is the hash
// loop of luaS_newlstr, which Redis's Lua runs over every byte of every
// string a script makes (each bucket read, each value written, each
// name), 9% dictFind and 6% memmove.
//
// Meeting the figure would take an add that does not touch its blocks'
// buckets before it returns. That was built and measured, and not kept:
// a write-behind mode in which an add appended one op per group (pod,
// tier, keys, bucket ids) to a per-group list and returned, scripts
// folded the list into the buckets in batches, Score read the unfolded
// adds with the blocks, and a remove folded its group's list first so
// that it found the adds logged before it. At 400 adds of 512 new keys a
// second an add call took 0.23-0.34 ms on average (p50 0.17 ms) against
// 1.76-1.87 ms, for the same server time per add (1.5-1.7 ms, the folds
// included). But the wait moved rather than went: a 4-key remove after
// each add took 1.75 ms at p50 against 0.17 ms, as it folded what the
// adds had logged, so an event worker applying both waited as long as
// before (a review of the change measured it); back to back, adds were
// slower (1.9 ms against 1.56-1.75 ms); events of 4 blocks from 4 writers
// cost the server 56 us each against 60 us, within noise; and an add the
// fold refused (a block over 65,535 references) could no longer fail its
// caller. Not worth a second write path. (Commit 3e6d15f has it, with
// BenchmarkRedisIndexAddPaced and BenchmarkRedisIndexAddWriteBehind, which
// gave these figures.)
//
// Small adds are bound by the cost of a script call rather than by keys:
// 41 us of server time for one key, 68 us for 4, 86 us for 16 (one
// writer), and 58 us per 4-block event from 4 concurrent writers
// (BenchmarkRedisIndexAddSmall), so one server applies about 15,000-17,000
// four-block BlockStored events a second.
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

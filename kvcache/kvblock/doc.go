// Package kvblock holds kvtrack's vocabulary for KV-cache blocks and the index
// of which pod holds which block.
//
// A block is named by a Key, a 64-bit value. In the vllm key scheme the key is
// exactly the hash vLLM publishes in its KV events; in the tokens scheme it is
// derived from the block's token IDs. Package blockhash computes both. A Pod is
// one engine: the address:port requests are routed to, plus its data-parallel
// rank. A Tier is where the engine keeps the block (GPU, CPU, STORAGE, ...):
// the built-in media are constants, and an immutable Media table, built from
// the configured tier weights and shared by the index and the event source,
// numbers the others; media it does not name share TierOther.
//
// The Index records (key, pod, tier) entries from the event path and answers
// the read path's question: for a prompt's keys in order, how long a prefix
// does each candidate pod hold? MemIndex is the in-memory Index; the
// indextest subpackage is the conformance suite every Index must pass, and
// MeteredIndex adds the kvtrack_index_* Prometheus metrics to any Index.
//
// # The in-memory index
//
// MemIndex interns pods to 20-bit ids and splits keys over a fixed array of
// shards (DefaultShards, 256). A shard is an open-addressing table of
// two-word slots — the key and a value word — with no pointers, so the
// garbage collector never scans the index. A key held by one pod keeps its
// entry (pod id, tier, refcount packed in a word) inline in the slot; a key
// held by several keeps a handle to a run of entry words in the shard's
// slab. That is about 28-32 bytes of heap per (block, pod) entry, measured by
// BenchmarkIndexMemory, against about 1,160 for llm-d's indexer.
//
// Capacity bounds the entries; past it each shard evicts whole keys by
// CLOCK, an approximation of least recently stored or scored.
//
// # Hybrid models
//
// An entry word also carries the KV-cache group the block was stored for
// (0 for a model with one group, so the group costs nothing there). MemIndex
// implements GroupIndex: AddGroup records each pod's groups (full attention,
// sliding window, Mamba; their block sizes and windows), and Score computes
// a hybrid pod's hit as vLLM's hybrid coordinator does (hybrid.go), in a
// second walk that only pods with hybrid groups take.
//
// # Concurrency
//
// Everything in this package is safe for concurrent use unless its doc says
// otherwise. In MemIndex, writers lock one shard per key. Score takes no
// lock: it reads each shard under a sequence count and retries, or briefly
// waits for the writer, if a write to that shard overlapped. Growing a
// shard's table or compacting its slab happens on the side and is
// published atomically, so readers never wait for it; ClearPod works through
// a shard in bounded chunks. Score allocates nothing when the caller's dst
// has room.
//
// kvblock imports nothing else of kvtrack.
package kvblock

// Package kvcache is kvtrack's entry point: an Indexer that keeps a block
// index fed from the engines' KV events and scores requests against it.
//
// # Scoring
//
// A request (a completion prompt, chat messages or token IDs, plus the
// candidate pods) is tokenized, cut into full blocks of Hash.BlockSize
// tokens, and each block is named by a key: in the vllm key scheme exactly
// the 64-bit hash vLLM publishes (same algorithm, PYTHONHASHSEED and block
// size, LoRA name and cache_salt mixed in as vLLM does), in the tokens
// scheme a fast chain hash of the token IDs that the event path computes
// the same way from each BlockStored's tokens. Each candidate's score is
// the fraction of the prompt's blocks, from the first, that it holds:
// matched/total in [0, 1], 0 for a pod the index knows nothing about.
//
// Tokenizing and hashing a long prompt costs far more than the index walk,
// so both are cached: the tokenizer keeps recent prompts' tokens
// (tokenizer.cacheBytes), and the Indexer keeps recent requests' block keys
// (hash.keyCacheBytes), identified by a seeded 128-bit hash of every field
// that decides them. A request seen again skips tokenizing and hashing.
// With the vllm scheme a new prompt that shares a prefix with recent ones
// (a system prompt, a chat's earlier turns) is SHA-256 hashed only after
// the shared part: the Indexer keeps recent prefixes' last vLLM digests
// (hash.chainCacheBytes), found by a fast chained hash of their blocks.
//
// # Events
//
// With the defaults (events.mode "connect"), New and Run open no socket:
// each AddPod dials that pod's publisher at <pod address>:events.port, and
// RemovePod closes it and clears the pod's blocks. In bind mode Run binds
// events.endpoint and engines connect to it, each naming itself in the
// topic kv@<address:port>@<model>. Every pod's events are applied in order
// by one of events.workers goroutines; package kvevents does the work.
//
// With events.enabled false the Indexer applies no events and opens no
// socket: it only reads the index (and records its own speculative
// entries). That is the setting for all but one of several replicas sharing
// one redis index, because each replica that applies a pod's events takes
// its own reference on every block stored, so two appliers double the
// counts and blocks outlive their removal. Running events on every replica
// with the memory backend is right: each replica has its own index.
//
// # Configuration and metrics
//
// Config holds every setting in one place (JSON and YAML, defaults,
// Validate); the EPP plugin in package scorer takes it as its parameters.
// With WithRegisterer, the Indexer registers its own kvtrack_indexer_*
// metrics, the index's (kvtrack_index_* for the memory backend,
// kvtrack_redis_* for redis) and the event pool's (kvtrack_events_*,
// kvtrack_events_hash_mismatches_total) on the one registerer; metrics.beatInterval
// adds a periodic log line about the index (kvblock.RunMetricsBeat).
//
// Importing kvcache compiles no Kubernetes or EPP framework code.
//
// # Concurrency
//
// An Indexer is safe for concurrent use: Score, Speculate, AddPod and
// RemovePod may be called from any goroutine, before or while Run applies
// events and expires speculative entries. Run is called at most once.
package kvcache

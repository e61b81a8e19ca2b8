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
// The engines' KV events reach the index through an EventSource passed to
// New with WithEventSource. Package kvevents provides the one that follows
// vLLM over ZMQ (kvevents.Source); it needs cgo and libzmq, which is why
// kvcache does not import it and builds with CGO_ENABLED=0.
//
// With the defaults (events.mode "connect"), New and Start open no socket:
// each AddPod dials that pod's publisher at <pod address>:events.port (and
// port+r for every data-parallel rank r), and RemovePod closes it and
// clears the pod's blocks. In bind mode Start binds events.endpoint (one
// port per rank) and returns the error if it cannot; engines connect to
// it, each naming itself in the topic kv@<address:port>@<model>, and only
// pods added with AddPod are admitted. Every pod's events are applied in
// order by one of events.workers goroutines.
//
// With events.enabled false the Indexer applies no events, needs no event
// source and opens no socket: it only reads the index (and records its own
// speculative entries). That is the setting for all but one of several
// replicas sharing one redis index, because each replica that applies a
// pod's events takes its own reference on every block stored, so two
// appliers double the counts and blocks outlive their removal. Running
// events on every replica with the memory backend is right: each replica
// has its own index.
//
// # Configuration
//
// Config is the one configuration tree: hashing, index, redis, events
// (every setting of the event pool), tokenizer, speculation, LoRA, data
// parallelism and metrics. ParseConfig and LoadConfig read it from YAML or
// JSON strictly (an unknown field or an ill-typed value is a *FieldError
// naming its path and what is valid), apply the defaults field by field
// and validate; DecodeStrict does the decoding for a program that embeds
// Config in a file of its own. The EPP plugin, examples/router, the CLI and
// kvtrack doctor all read it this way.
//
// # Lifecycle
//
// New validates and builds; nothing runs, but Score works at once. Start
// opens the event subscription and returns what prevents it; Ready is
// closed once events flow; Done and Err report a subscription that stopped.
// Close stops everything and releases the sockets, the index's client and
// every metric registration; it is idempotent. Run is Start, a wait, and
// Close.
//
// # Metrics
//
// With WithRegisterer, the Indexer registers its own kvtrack_indexer_*
// metrics, the index's (kvtrack_index_* for the memory backend,
// kvtrack_redis_* for redis) and the event source's (kvtrack_events_*) on
// the one registerer; metrics.beatInterval adds a periodic log line about
// the index (kvblock.RunMetricsBeat).
//
// Importing kvcache compiles no Kubernetes or EPP framework code.
//
// # Concurrency
//
// An Indexer is safe for concurrent use: Score, Speculate, AddPod and
// RemovePod may be called from any goroutine, before or after Start.
package kvcache

// Package sim compares request routers on a simulated vLLM pool, with
// kvtrack as the precise router.
//
// Each simulated pod is a vLLM-like engine (internal/vllmfake): a
// finite KV cache of blocks hashed with vLLM's own hash (blockhash.Hasher),
// reference-counted while a request runs, cached blocks evicted
// least-recently-freed first; a FIFO queue; a prefill rate. Time is
// modelled, not slept: a discrete-event loop advances a clock from one
// arrival, prefill end or decode end to the next, so a run of many minutes
// of traffic takes seconds.
//
// In the precise router's run every pod publishes its KV events in vLLM's
// wire format over a real ZMQ socket, and kvtrack (one kvcache.Indexer per
// router replica, each bound to its own endpoint, as llm-d deploys it)
// indexes them asynchronously; kvtrack's clock is the modelled one. The two
// clocks are coupled by a barrier: before each routing decision the
// simulation waits until kvtrack reports that it has applied every block the
// pods have published so far, so results do not depend on machine speed. An
// optional modelled event lag holds each batch back for that long of
// modelled time before it is published, to show routing on stale state.
//
// The other routers (GIE's approximate prefix plugin, as package
// approxprefix re-implements it and proves against GIE's code; round robin, random,
// least loaded, and an oracle that reads every pod's true cache and the
// blocks its queued requests are about to compute) run on identical pods
// and the identical request stream. Stateful routers run as Config.Replicas
// instances that share only what they observe.
//
// RunMatrix runs the evidence matrix: Scenarios (cache pressure, pod
// restarts, outside traffic, chat, chat-template and cache_salt variants)
// at several replica counts, each cell comparing MatrixRouters.
//
// Run is not safe to call concurrently with itself on the same Config's
// endpoints; everything else is plain data.
package sim

// Package kvevents ingests the KV-cache events vLLM publishes over ZMQ (and
// SGLang, TensorRT-LLM's streaming publisher and vLLM-compatible simulators,
// which reuse its protocol) and applies them to a kvblock.Index, so that the
// index matches what each engine really holds.
//
// # Decoding
//
// Decoder decodes one batch payload in any layout from vLLM v0.9.0 on:
// batches as [ts, events], [ts, events, dp_rank] or a map; events as
// positional arrays of any length (vLLM appended fields over the versions)
// or maps with a "type" key (v0.24+); integers of any msgpack width; block
// hashes as int64, uint64 or bytes (reduced to their last 8 bytes,
// big-endian, as vLLM does); a parent hash of nil or 0 meaning none. Unknown
// event tags, unknown fields and events with a field of the wrong type are
// skipped and counted without losing the rest of the batch. It decodes
// straight into reused typed structs (no []any trees): in steady state a
// batch decodes without allocating. Lengths are checked against the bytes
// left before anything is allocated, so hostile input cannot make it
// allocate beyond a small multiple of its own size.
//
// # Pool
//
// Pool subscribes, orders and applies. In ModeBind it binds one SUB
// endpoint (one per data-parallel rank, port + rank) that every engine
// connects to and reads the pod from the topic kv@<pod-ip:port>@<model>; in
// ModeConnect it opens one SUB socket per pod added with AddPod. One
// receiver goroutine owns every socket; messages are sharded by pod over
// Config.Workers goroutines, so each (pod, rank) is applied in order, through
// bounded queues (a message arriving at a full queue is dropped and
// counted).
//
// Each (pod, rank) stream's sequence numbers are tracked. A gap triggers a
// replay from the engine's replay endpoint (vLLM's ROUTER protocol, spoken
// from a DEALER socket; replies of 2 or 3 frames and the end marker are
// accepted) while that pod's live messages are held back until the replay is
// applied; what neither the replay nor the live stream covers is counted
// lost. A sequence number that goes backwards means the engine restarted:
// the pod's blocks are cleared and the stream starts over. (A restart is
// seen as such only if the new process's first message to arrive numbers
// below the old process's last; a restart that goes unheard for longer looks
// like a gap.) AllBlocksCleared clears that (pod, rank). A pod without a
// replay endpoint is reported as such (kvtrack_events_replay_configured 0 and a
// log line): its gaps cannot be repaired.
//
// In the vllm key scheme the published hashes are the index keys; when
// Config.Hash names the engines' seed or algorithm, every BlockStored that
// starts at the root and carries token_ids is re-hashed, and a mismatch is
// counted (kvtrack_events_hash_mismatches_total) and logged once per pod with its
// likely cause (PYTHONHASHSEED, hash algorithm or block size). In the tokens
// scheme keys are derived from token_ids (kvblock.TokenHasher), and a
// bounded per-pod map from engine hash to key serves removes.
//
// # Who may publish, and how much
//
// In bind mode the pool accepts connections only from the IPs of the pods
// added with AddPod: it runs a ZAP handler (RFC 27) in a libzmq context of
// its own, which holds any other peer's handshake until AddPod names its IP
// (refusing it would lock the engine out for good: a libzmq peer whose
// handshake is refused never reconnects, and engines often connect before
// the router learns of their pod). Each message
// is then checked against libzmq's Peer-Address property: its sender must
// still be a known pod's IP (RemovePod cannot close a connection already
// open), and the pod its topic names must be at that IP (the topic's port
// is the engine's HTTP port, so IPs are compared). A message failing
// either check is counted and never indexed. Config.Security.AllowAnySource
// turns both checks off, for development. In connect mode the pool dials
// the endpoints it is given and the pod is the one dialled.
//
// Config.Limits bound the rest: libzmq's ZMQ_MAXMSGSIZE on every socket
// (a larger frame drops the connection before it is buffered), block
// hashes and token ids per event, events per batch, a token bucket of
// applied events per (pod, rank), the payload bytes received and not yet
// applied, and the bytes one replay collects. A message over a limit is
// rejected whole and counted (kvtrack_events_rejected_total by reason, and
// kvtrack_events_pod_rejected_total for pods the pool follows, so the pod
// label stays bounded), with at most one log line per reason per second;
// its sequence number is consumed and the stream goes on. These checks run
// after decoding, which is itself bounded by the message size.
//
// # Concurrency
//
// A Decoder is not safe for concurrent use. A Pool is: Run, AddPod,
// RemovePod and Stats may be called from any goroutine. Run is called once
// and returns when its context ends. AddPod and RemovePod may be called
// before or during Run; RemovePod returns after the pod's blocks are cleared
// from the index, and no event of the pod is applied after it returns. The
// Index must be safe for concurrent use: workers call it in parallel, one
// pod per worker at a time. An observer (WithObserver) runs on the worker
// that applies the message and must not retain the Batch.
//
// # Errors
//
// Nothing in the event path is fatal. A malformed message, batch or event,
// a failed replay or a failed index update is counted (kvtrack_events_*
// metrics, Stats), logged, and skipped; the stream stays usable and later
// messages are applied. Decode's error (wrapping ErrMalformed) means that
// payload is unusable; the Decoder stays usable. Run returns an error only
// when it cannot start (a bind endpoint that cannot be bound) or libzmq
// polling fails; after that the Pool is finished. Metrics are registered on
// the prometheus.Registerer given with WithRegisterer.
package kvevents

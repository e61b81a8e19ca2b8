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
// Pool subscribes, orders and applies. It follows the pods added with
// AddPod, and only those: a pod given with rank 0 stands for every
// data-parallel rank below Config.DataParallelSize, since vLLM offsets
// every KV-events endpoint by the rank (offset_endpoint_port): rank r
// publishes on port + r and replays on replay port + r. In ModeBind the
// pool binds one SUB endpoint per rank (port + r) that the engines connect
// to, and a message on rank r's socket is for (pod, r), the pod its topic
// kv@<pod-address>@<model> names. In ModeConnect it dials each rank's
// publisher (AddPod's endpoint, port + r) with a SUB socket of its own. A
// batch that names a rank at or beyond DataParallelSize is counted
// (kvtrack_events_unknown_rank_total) and logged at most once a second:
// that engine runs more ranks than configured. One receiver goroutine owns
// every socket; messages are sharded by pod over Config.Workers
// goroutines, so each (pod, rank) is applied in order, through bounded
// queues (a message arriving at a full queue is dropped and counted).
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
// A failed index write (a Redis that is down or restarting) is a gap too:
// the index can no longer vouch for the pod's blocks. The pod's live
// messages are held, and every Config.ResyncInterval the pool tries to
// clear the pod; once the backend answers, the pod's history is replayed
// from the first message the stream applied, or, where that is impossible
// (no replay endpoint, or the engine no longer buffers it), the pod stays
// cleared and fills again from new events. Both are counted
// (kvtrack_events_resyncs_total{result="replayed"|"cleared"}) and logged.
// A backend that restarts empty while a pod publishes nothing is not
// noticed until that pod's next write fails.
//
// In the vllm key scheme the published hashes are the index keys; when
// Config.Hash names the engines' seed or algorithm, every BlockStored that
// starts at the root and carries token_ids is re-hashed, and a mismatch is
// counted (kvtrack_events_hash_mismatches_total) and logged once per pod with its
// likely cause (PYTHONHASHSEED, hash algorithm or block size). In the tokens
// scheme keys are derived from token_ids (blockhash.TokenHasher), and a
// bounded per-pod map from engine hash to key serves removes.
//
// # Who may publish, and how much
//
// Pods come from the pool, not from the wire. In bind mode a message is
// applied only if all of these hold, checked in this order before any
// state, log line or metric series exists for it:
//
//   - its sender connected from the IP of a pod added with AddPod. The
//     pool runs a ZAP handler (RFC 27) in a libzmq context of its own,
//     which holds any other peer's handshake until AddPod names its IP
//     (refusing it would lock the engine out for good: a libzmq peer whose
//     handshake is refused never reconnects, and engines often connect
//     before the router learns of their pod); each message's libzmq
//     Peer-Address is checked again, since RemovePod cannot close a
//     connection already open (reason unknown_peer);
//   - its topic is at most 512 bytes (reason topic);
//   - its topic's address is exactly the address of a pod added, and the
//     rank of the socket it arrived on is followed for that pod (reason
//     unknown_pod). A topic naming a new port at a known pod's IP mints
//     nothing;
//   - that pod's IP is the sender's (reason peer_mismatch).
//
// Publishers that name no port (llm-d's guide sets kv@${POD_IP}@model):
// a topic whose address is an IP alone is accepted for the one pod added
// at that IP. If several pods share the IP (pods behind one address, or
// ports as pods), such a topic is rejected (reason ambiguous_pod) with a
// log line naming the fix: put the port in the topic,
// kv@${POD_IP}:${POD_PORT}@model. IPv6 addresses are written in brackets
// with a port, kv@[fd00::5]:8000@model; a bare IPv6 address names no port.
//
// Rejections are counted by reason (kvtrack_events_rejected_total{reason},
// a bounded label set) and logged at most once a second per reason; a
// pod label (kvtrack_events_pod_rejected_total, kvtrack_events_pod_degraded)
// exists only for pods added with AddPod, and RemovePod drops the pod's
// streams, series and cached topics. Config.Security.AllowAnySource turns
// the source checks off, for development: topics then name the pods, up to
// 1024 of them (reason pods past that). In connect mode the pool dials the
// endpoints it is given and the pod is the one dialled.
//
// Config.Limits bound the rest: libzmq's ZMQ_MAXMSGSIZE on every socket
// (a larger frame drops the connection before it is buffered), block
// hashes and token ids per event, events per batch, a token bucket of
// applied events per (pod, rank), the payload bytes received and not yet
// applied, and the bytes one replay collects. A message over a limit is
// rejected whole and counted (kvtrack_events_rejected_total by reason, and
// kvtrack_events_pod_rejected_total for pods added with AddPod, so the pod
// label stays bounded), with at most one log line per reason per second;
// its sequence number is consumed and the stream goes on. These checks run
// after decoding, which is itself bounded by the message size.
//
// # Concurrency and lifecycle
//
// A Decoder is not safe for concurrent use. A Pool is: Start, Run, Close,
// AddPod, RemovePod and Stats may be called from any goroutine. Start binds
// (or connects) synchronously and returns a bind error; Ready is closed once
// the sockets are bound and subscribed; Run is Start and a wait until ctx
// ends. Close is idempotent: it stops the goroutines, closes the sockets and
// unregisters the metrics. A Pool starts once; after it stopped, AddPod
// returns ErrClosed. AddPod and RemovePod may be called before or while it
// runs; RemovePod returns after the pod's blocks are cleared from the
// index, and no event of the pod is applied after it returns, in either
// mode. The Index must be safe for concurrent use: workers call it in
// parallel, one pod per worker at a time. An observer (WithObserver) runs
// on the worker that applies the message, outside the stream's lock (it
// may call RemovePod, even for the pod it observes), and must not retain
// the Batch.
//
// # Errors
//
// Nothing in the event path is fatal. A malformed message, batch or event
// or a failed replay is counted (kvtrack_events_* metrics, Stats), logged,
// and skipped; a failed index update starts a resync; the stream stays
// usable and later messages are applied. Decode's error (wrapping
// ErrMalformed) means that payload is unusable; the Decoder stays usable.
// Start returns an error only when it cannot start (a bind endpoint that
// cannot be bound), and Run also when libzmq polling fails; after that the
// Pool is finished. Metrics are registered on
// the prometheus.Registerer given with WithRegisterer.
package kvevents

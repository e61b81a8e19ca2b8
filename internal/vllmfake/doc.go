// Package vllmfake imitates the parts of a vLLM engine that kvtrack observes:
// a prefix-cache block pool with vLLM's allocation, reference counting and
// LRU eviction of unreferenced blocks, and a KV-event publisher that sends
// vLLM's wire format (msgpack EventBatch, [topic, seq, payload] frames) over
// a real libzmq socket.
//
// The simulation (internal/sim) and the router's tests
// (examples/router) use it as their engine. It is test and demo machinery,
// not part of kvtrack's API.
//
// BlockPool is not safe for concurrent use; Publisher is safe for
// concurrent use.
package vllmfake

// Package kvevents ingests the KV-cache events vLLM (and SGLang, and
// vLLM-compatible simulators) publish over ZMQ, and applies them to a
// kvblock.Index.
package kvevents

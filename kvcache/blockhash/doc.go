// Package blockhash computes the keys of a prompt's KV-cache blocks the way
// vLLM does, so that kvtrack's keys equal the block hashes vLLM publishes in
// its KV events (the vllm key scheme).
//
// A Hasher reproduces one of vLLM's prefix-caching hash algorithms (SHA256,
// SHA256CBOR, XXHash, XXHashCBOR, SHA256CBOR64) for a HashConfig: the
// algorithm, the engine's PYTHONHASHSEED and its block size. Each block's
// hash chains its parent's, its token IDs and its extra keys (LoRA adapter,
// multimodal inputs, cache salt, prompt embeddings: ExtraKey,
// RequestExtras, ParseExtraKeys). The pickle and canonical CBOR encodings
// vLLM hashes are written by hand into reused buffers, so hashing a prompt
// allocates nothing beyond its keys; the tests prove them byte-identical to
// CPython's pickle, fxamacker/cbor and vectors computed by vLLM itself.
//
// TokenHasher is the tokens key scheme's hasher: keys derived from token IDs
// alone, for engines whose own hashes cannot be reproduced.
//
// DiagnoseHashes explains a mismatch between published hashes and a
// HashConfig (another algorithm, another block size, another seed), for the
// event path's warning and kvtrack doctor.
//
// The keys are kvblock.Key values; blockhash imports only kvblock of
// kvtrack.
package blockhash

// Package kvcache is kvtrack's entry point: an Indexer that keeps a block
// index fed from the engines' KV events and scores requests against it.
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
// Config holds every setting in one place (JSON and YAML, defaults,
// Validate); the EPP plugin in package scorer takes it as its parameters.
//
// Importing kvcache compiles no Kubernetes or EPP framework code.
//
// An Indexer is safe for concurrent use: Score runs on many request
// goroutines while Run applies events.
package kvcache

// Package kvblock holds kvtrack's vocabulary for KV-cache blocks and the index
// of which pod holds which block.
//
// A block is named by a Key, a 64-bit value. In the vllm key scheme the key is
// exactly the hash vLLM publishes in its KV events (see Hasher); in the tokens
// scheme it is derived from the block's token IDs (see TokenHasher). A Pod is
// one engine: the address:port requests are routed to, plus its data-parallel
// rank. A Tier is where the engine keeps the block (GPU, CPU, STORAGE, ...).
//
// The Index records (key, pod, tier) entries from the event path and answers
// the read path's question: for a prompt's keys in order, how long a prefix
// does each candidate pod hold?
//
// Everything in this package is safe for concurrent use unless its doc says
// otherwise. kvblock imports nothing else of kvtrack.
package kvblock

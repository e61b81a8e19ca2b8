// Package hf encodes text with a HuggingFace tokenizer.json in pure Go,
// producing the token IDs of the Rust tokenizers crate (the one vLLM uses)
// by following its pipeline step by step:
//
//  1. added tokens are split out of the raw text (leftmost-longest, with
//     lstrip, rstrip and single_word), the rest is normalized, and
//     normalized added tokens are split out of that;
//  2. pre-tokenizers cut the text into words;
//  3. the BPE model merges each word, lowest (rank, position) first, as
//     Word::merge_all does;
//  4. with add_special_tokens, the post-processor adds its tokens.
//
// Implemented components: BPE (byte-level and byte-fallback, string and
// pair merges, ignore_merges, unk and fuse_unk, subword prefix and suffix);
// normalizers NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip and
// Sequence; pre-tokenizers Split (every behaviour, invert), ByteLevel,
// Metaspace, Digits and Sequence; post-processors TemplateProcessing,
// RobertaProcessing, BertProcessing, ByteLevel and Sequence. Anything else
// (WordPiece, Unigram, BertNormalizer, Precompiled, ...) fails Load with
// ErrUnsupported rather than encoding differently.
//
// Regexes run on github.com/dlclark/regexp2 with a per-match timeout. The
// pre-tokenizer regexes of Llama-3, Qwen2/3 and GPT-2 run through
// hand-written matchers instead, which are tested and fuzzed against
// regexp2. Byte-level models work on raw bytes, with merges in a flat
// open-addressing table.
//
// # Concurrency and caching
//
// A Tokenizer is immutable after Load and safe for concurrent use. It keeps
// a bounded cache of BPE results per word, sharded by hash and stored in
// pointer-free arenas; Options.WordCacheBytes sizes it.
package hf

// Package tokenization turns prompts and chat requests into exactly the
// token IDs vLLM computes for them, so that the KV-block index can be
// looked up before the request reaches a pod.
//
// The API is small:
//
//   - Tokenizer: Encode(text, addSpecialTokens). addSpecialTokens follows
//     vLLM: true for completions, false for rendered chat prompts.
//   - ChatTokenizer: EncodeChat(*ChatRequest) renders messages with the
//     model's chat template and encodes the result.
//   - Load finds a model's tokenizer (a tokenizer.json file, a directory,
//     the HuggingFace cache, or the hub with HF_TOKEN) and returns a Local:
//     the pure-Go tokenizer.json encoder of package hf plus the chat
//     template, rendered by the project's own Jinja renderer
//     (internal/jinja) in transformers' environment, with vLLM's message
//     preprocessing around it.
//   - Remote calls a vLLM pod's /tokenize endpoint, for models the
//     in-process path cannot serve.
//   - Pool wraps any of them: it bounds concurrent encodes and keeps a
//     byte-bounded LRU of whole-prompt results; package hf keeps a
//     per-word BPE cache below it.
//
// # Exactness
//
// Package hf reproduces the HuggingFace Rust tokenizers crate step by step;
// its tests compare it with that crate (npm tokenizers@0.23.2) on the real
// tokenizer.json files of Qwen3, Llama-3.1, Mistral-7B (llama2), Gemma-3
// and DeepSeek-V3 over a multilingual corpus and seeded fuzz strings, with
// and without special tokens (hack/gen-tokenizer-goldens.sh). Chat
// renderings of every fetched model's template (Qwen3, Llama-3.1,
// DeepSeek-V3, Gemma-3) are compared byte for byte with Python Jinja2 in
// transformers' environment, and package jinja's constructs with Jinja2
// one by one (hack/gen-jinja-goldens.py); README.md lists which public
// templates render. Known limits:
//
//   - A template using a construct the renderer does not implement
//     (include, recursive loops, some str methods and filters) fails with
//     the construct's name and line, never with a different rendering.
//     Load succeeds and completions work; serve such models' chat
//     requests through Remote.
//   - For LlamaTokenizerFast and GemmaTokenizerFast models, transformers 4.x
//     (and so vLLM) rebuilds the post-processor from tokenizer_config's
//     add_bos_token/add_eos_token; Load does the same unless
//     LoadOptions.RawPostProcessor is set. DeepSeek-V3 is the real case:
//     its tokenizer.json adds no BOS, vLLM does.
//   - Go's Unicode tables are version 15.0; characters assigned later may
//     be classified differently from the Rust crate's.
//   - Content parts other than text (images, audio) are rejected: vLLM
//     expands them into placeholder tokens that depend on the model's
//     processor.
//
// # Concurrency
//
// Local, Remote, Pool and ChatTemplate are safe for concurrent use and
// immutable after construction. Slices returned by Encode and EncodeChat
// belong to the caller.
package tokenization

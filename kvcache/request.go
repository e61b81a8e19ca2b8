package kvcache

import (
	"errors"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Request is one routing question: which of Pods holds the longest prefix
// of this prompt?
//
// The prompt is exactly one of Prompt (a completion prompt, tokenized with
// the tokenizer's special tokens, as vLLM's /v1/completions does), Chat
// (rendered with the model's chat template, then tokenized without special
// tokens, as /v1/chat/completions does) or TokenIDs (used as given).
type Request struct {
	// Model is the served model name; the remote tokenizer and chat
	// templates are chosen by it.
	Model string
	// Prompt is a completion prompt.
	Prompt string
	// Chat is a chat-completions request.
	Chat *ChatRequest
	// TokenIDs is an already tokenized prompt (from an upstream tokenizer).
	TokenIDs []uint32
	// LoRA is the LoRA adapter's name when the request targets one; vLLM
	// mixes it into every block's hash.
	LoRA string
	// CacheSalt is the request's cache_salt; vLLM mixes it into the first
	// block's hash, so salted prompts share nothing with unsalted ones.
	CacheSalt string
	// Pods are the candidates, each the "address:port" requests are sent to.
	Pods []string
}

// ChatRequest is the part of an OpenAI chat-completions request that decides
// the rendered prompt.
type ChatRequest struct {
	Messages             []ChatMessage
	Tools                []any
	Documents            []any
	ChatTemplate         string // overrides the model's template when set
	AddGenerationPrompt  bool
	ContinueFinalMessage bool
	TemplateKWArgs       map[string]any // chat_template_kwargs
}

// ChatMessage is one message of a chat.
type ChatMessage struct {
	Role    string
	Content string
}

// Result is the answer to a Request.
type Result struct {
	// Pods holds one entry per Request.Pods, in the same order.
	Pods []PodScore
	// Blocks is the number of blocks vLLM's prefix-cache lookup can find
	// for this prompt, the denominator of every score: floor((n-1)/block
	// size) for a prompt of n tokens. vLLM looks up at most n-1 tokens
	// (the last token's logits must be computed) and caches only full
	// blocks, so a prompt whose length is a multiple of the block size has
	// one full block more than that.
	Blocks int
	// Keys are the prompt's block keys, one per full block, in order; pass
	// them to Speculate (vLLM caches every full block once it has
	// computed it). They may be shared with the Indexer's key cache: read
	// them, do not modify them (appending is safe; it copies).
	Keys []kvblock.Key
}

// PodScore is one candidate's result.
//
// With data parallelism behind one endpoint (dataParallel.endpoints
// "shared"), Matched, CachedTokens and Weighted are the means over the
// endpoint's ranks, rounded down, and Score is the mean score: vLLM's
// internal load balancer picks the rank by load alone, so that is what a
// request can expect.
type PodScore struct {
	Pod string
	// Score, in [0, 1], ranks the pods: Weighted over Blocks blocks held on
	// GPU. A prefix held on GPU scores its share of Blocks; held only on
	// CPU or storage, that share times the tier's weight (so below GPU and
	// above a miss); 0 for a pod without data. It grows with CachedTokens
	// for pods holding their prefix on the same tier.
	Score float64
	// CachedTokens is the number of prompt tokens vLLM will find cached on
	// the pod (from its GPU prefix cache or, for blocks offloaded to CPU or
	// storage, through its offloading connector): Matched blocks of the
	// block size. A fully cached prompt of n tokens reports
	// floor((n-1)/blockSize) blocks' worth, as vLLM reuses.
	CachedTokens int
	// Matched is the number of blocks from the start of the prompt that
	// vLLM will reuse: the longest prefix the pod holds on any tier, capped
	// at Blocks, or, for a hybrid model (sliding-window or Mamba groups),
	// the hit vLLM's hybrid coordinator finds.
	Matched int
	// Weighted is Matched with each block weighted by the best tier the
	// pod holds it on (see IndexConfig.TierWeights).
	Weighted float64
}

// ErrNoTokenizer is returned for a text prompt when no tokenizer is
// configured.
var ErrNoTokenizer = errors.New("kvcache: the request has a text prompt but no tokenizer is configured (set tokenizer.path or tokenizer.url, or send token IDs)")

func (r *Request) validate() error {
	n := 0
	if r.Prompt != "" {
		n++
	}
	if r.Chat != nil {
		n++
	}
	if r.TokenIDs != nil {
		n++
	}
	if n > 1 {
		return errors.New("kvcache: request sets more than one of Prompt, Chat and TokenIDs")
	}
	return nil
}

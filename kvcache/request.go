package kvcache

import (
	"encoding/json"
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
	// Prompts is a batch: a completions request whose prompt is a list.
	// vLLM serves each prompt as its own request on the pod the batch is
	// routed to; see Indexer.Score. It excludes Prompt, Chat and TokenIDs.
	Prompts []BatchPrompt
	// NoSpecialTokens is a completion's add_special_tokens: false. vLLM's
	// default for completions is true, so the zero value matches it.
	// (Chat requests carry theirs in ChatRequest.AddSpecialTokens.)
	NoSpecialTokens bool
	// LoRA is the LoRA adapter's name when the request targets one; vLLM
	// mixes it into every block's hash. When empty and Model names a known
	// adapter (configured in lora.adapters or seen in the engines' events),
	// the Indexer sets it to Model.
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
	// AddSpecialTokens is add_special_tokens; vLLM's default for chat is
	// false (the template carries the special tokens).
	AddSpecialTokens bool

	// The request's own JSON, set by kvcache/openai from the body: when
	// non-nil each replaces its typed counterpart above and reaches the
	// chat template as sent (content parts, tool calls, key order).
	RawMessages       json.RawMessage
	RawTools          json.RawMessage
	RawDocuments      json.RawMessage
	RawTemplateKWArgs json.RawMessage
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
	// Batch, for a batch request (Request.Prompts), holds each prompt's
	// keys; Keys is then their concatenation. Nil for a single prompt.
	Batch [][]kvblock.Key
	// BatchBlocks, for a batch, holds each prompt's Blocks (Blocks is
	// their sum). Pass it with Batch to SpeculateResult.
	BatchBlocks []int
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
	if r.Prompts != nil {
		n++
	}
	if n > 1 {
		return errors.New("kvcache: request sets more than one of Prompt, Chat, TokenIDs and Prompts")
	}
	return nil
}

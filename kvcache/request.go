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
	// Blocks is the number of full blocks in the prompt: the denominator of
	// every score. A trailing partial block is never cached by vLLM.
	Blocks int
	// Keys are the prompt's block keys, in order; pass them to Speculate.
	// They may be shared with the Indexer's key cache: read them, do not
	// modify them (appending is safe; it copies).
	Keys []kvblock.Key
}

// PodScore is one candidate's result.
type PodScore struct {
	Pod string
	// Score is Matched/Blocks in [0, 1]; 0 for a pod without data.
	Score float64
	// Matched is the number of consecutive blocks from the start of the
	// prompt that the pod holds on any tier.
	Matched int
	// Weighted is Matched with each block weighted by the best tier the pod
	// holds it on (see IndexConfig.TierWeights).
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

package kvcache

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/kvtrack/kvtrack/tokenization"
)

func newTokenizer(cfg Config, o options) (Tokenizer, error) {
	var base tokenization.Tokenizer
	switch {
	case cfg.Tokenizer.Path != "":
		l, err := tokenization.Load(context.Background(), cfg.Tokenizer.Path, tokenization.LoadOptions{Offline: true})
		if err != nil {
			return nil, fmt.Errorf("kvcache: tokenizer.path: %w", err)
		}
		base = l
	case cfg.Tokenizer.URL != "":
		r, err := tokenization.NewRemote(cfg.Tokenizer.URL, cfg.Tokenizer.Model, nil)
		if err != nil {
			return nil, fmt.Errorf("kvcache: tokenizer.url: %w", err)
		}
		base = r
	default:
		return nil, nil
	}
	p, err := tokenization.NewPool(base, tokenization.PoolConfig{PromptCacheBytes: cfg.Tokenizer.CacheBytes})
	if err != nil {
		return nil, fmt.Errorf("kvcache: tokenizer: %w", err)
	}
	return poolTokenizer{p}, nil
}

type poolTokenizer struct{ p *tokenization.Pool }

func (t poolTokenizer) Encode(text string, add bool) ([]uint32, error) { return t.p.Encode(text, add) }

func (t poolTokenizer) EncodeChat(ctx context.Context, model string, c *ChatRequest) ([]uint32, error) {
	// A struct keeps the keys in the order clients send them (a template
	// that prints a message with tojson sees role before content) and
	// encodes faster than a map.
	type message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	msgs := make([]message, len(c.Messages))
	for i, m := range c.Messages {
		msgs[i] = message{Role: m.Role, Content: m.Content}
	}
	req := &tokenization.ChatRequest{AddGenerationPrompt: c.AddGenerationPrompt, ContinueFinalMessage: c.ContinueFinalMessage, ChatTemplate: c.ChatTemplate}
	var err error
	if req.Messages, err = json.Marshal(msgs); err != nil {
		return nil, err
	}
	if c.Tools != nil {
		if req.Tools, err = json.Marshal(c.Tools); err != nil {
			return nil, err
		}
	}
	if c.Documents != nil {
		if req.Documents, err = json.Marshal(c.Documents); err != nil {
			return nil, err
		}
	}
	if c.TemplateKWArgs != nil {
		if req.ChatTemplateKwargs, err = json.Marshal(c.TemplateKWArgs); err != nil {
			return nil, err
		}
	}
	return t.p.EncodeChatContext(ctx, req)
}

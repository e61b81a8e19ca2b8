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

// EncodeFor implements contextTokenizer: the request's model reaches a
// remote tokenizer, and ctx bounds the call.
func (t poolTokenizer) EncodeFor(ctx context.Context, model, text string, add bool) ([]uint32, error) {
	return t.p.EncodeFor(ctx, model, text, add)
}

// contextTokenizer is a Tokenizer that takes the request's context and
// model; the built-in tokenizer is one.
type contextTokenizer interface {
	EncodeFor(ctx context.Context, model, text string, addSpecialTokens bool) ([]uint32, error)
}

// encodeText tokenizes a text prompt for model with ctx when tok takes them.
func encodeText(ctx context.Context, tok Tokenizer, model, text string, add bool) ([]uint32, error) {
	if ct, ok := tok.(contextTokenizer); ok {
		return ct.EncodeFor(ctx, model, text, add)
	}
	return tok.Encode(text, add)
}

func (t poolTokenizer) EncodeChat(ctx context.Context, model string, c *ChatRequest) ([]uint32, error) {
	req, err := c.TokenizationRequest()
	if err != nil {
		return nil, err
	}
	return t.p.EncodeChatFor(ctx, model, req)
}

// TokenizationRequest is c as package tokenization renders it: the
// request's own JSON where kvcache/openai kept it, else the typed fields
// encoded. A Tokenizer of a program's own (a failover over several) uses it
// to render chats exactly as the built-in one does.
func (c *ChatRequest) TokenizationRequest() (*tokenization.ChatRequest, error) {
	// A struct keeps the keys in the order clients send them (a template
	// that prints a message with tojson sees role before content) and
	// encodes faster than a map.
	type message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	req := &tokenization.ChatRequest{
		AddGenerationPrompt: c.AddGenerationPrompt, ContinueFinalMessage: c.ContinueFinalMessage,
		AddSpecialTokens: c.AddSpecialTokens, ChatTemplate: c.ChatTemplate,
		Messages: c.RawMessages, Tools: c.RawTools, Documents: c.RawDocuments, ChatTemplateKwargs: c.RawTemplateKWArgs,
	}
	var err error
	if req.Messages == nil {
		msgs := make([]message, len(c.Messages))
		for i, m := range c.Messages {
			msgs[i] = message{Role: m.Role, Content: m.Content}
		}
		if req.Messages, err = json.Marshal(msgs); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		dst *json.RawMessage
		v   any
		nil bool
	}{
		{&req.Tools, c.Tools, c.Tools == nil},
		{&req.Documents, c.Documents, c.Documents == nil},
		{&req.ChatTemplateKwargs, c.TemplateKWArgs, c.TemplateKWArgs == nil},
	} {
		if *f.dst != nil || f.nil {
			continue
		}
		if *f.dst, err = json.Marshal(f.v); err != nil {
			return nil, err
		}
	}
	return req, nil
}

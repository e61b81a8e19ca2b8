package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/tokenization"
)

// Several tokenizers with failover: -tokenizer takes a comma-separated
// list of sources, each a local tokenizer.json (or directory) or a vLLM
// server's URL, tried in order. A source that fails is skipped for a
// cooldown, so one dead tokenizer pod costs one failed attempt, not one per
// request; when every source is cooling down the first is tried anyway.

// tokenizerSource is one way to tokenize.
type tokenizerSource struct {
	name      string
	encode    func(ctx context.Context, text string, add bool) ([]uint32, error)
	chat      func(ctx context.Context, req *tokenization.ChatRequest) ([]uint32, error)
	downUntil atomic.Int64 // unix nanoseconds
}

// failoverTokenizer is a kvcache.ChatTokenizer over its sources.
type failoverTokenizer struct {
	sources  []*tokenizerSource
	cooldown time.Duration
	model    string // the model named to remote tokenizers; "" = the request's
}

// newFailoverTokenizer loads each source: paths now (a bad path is an
// error at start), URLs on first use.
func newFailoverTokenizer(ctx context.Context, specs []string, model string) (*failoverTokenizer, error) {
	f := &failoverTokenizer{cooldown: 10 * time.Second, model: model}
	for _, spec := range specs {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		s := &tokenizerSource{name: spec}
		if strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://") {
			r, err := tokenization.NewRemote(spec, model, nil)
			if err != nil {
				return nil, fmt.Errorf("tokenizer %s: %w", spec, err)
			}
			s.encode = r.EncodeContext
			s.chat = r.EncodeChatContext
		} else {
			l, err := tokenization.Load(ctx, spec, tokenization.LoadOptions{Offline: true})
			if err != nil {
				return nil, fmt.Errorf("tokenizer %s: %w", spec, err)
			}
			s.encode = func(_ context.Context, text string, add bool) ([]uint32, error) { return l.Encode(text, add) }
			s.chat = func(_ context.Context, req *tokenization.ChatRequest) ([]uint32, error) { return l.EncodeChat(req) }
		}
		f.sources = append(f.sources, s)
	}
	if len(f.sources) == 0 {
		return nil, errors.New("tokenizer: no sources")
	}
	return f, nil
}

// try runs op on the first source not cooling down, then the next ones,
// and returns the first success or every failure.
func (f *failoverTokenizer) try(op func(s *tokenizerSource) ([]uint32, error)) ([]uint32, error) {
	now := time.Now().UnixNano()
	var errs []error
	tried := 0
	for _, s := range f.sources {
		if s.downUntil.Load() > now {
			continue
		}
		tried++
		ids, err := op(s)
		if err == nil {
			return ids, nil
		}
		s.downUntil.Store(time.Now().Add(f.cooldown).UnixNano())
		errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
	}
	if tried == 0 { // all cooling down: the first may be back
		ids, err := op(f.sources[0])
		if err == nil {
			f.sources[0].downUntil.Store(0)
			return ids, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", f.sources[0].name, err))
	}
	return nil, fmt.Errorf("every tokenizer failed: %w", errors.Join(errs...))
}

// Encode implements kvcache.Tokenizer.
func (f *failoverTokenizer) Encode(text string, add bool) ([]uint32, error) {
	return f.try(func(s *tokenizerSource) ([]uint32, error) { return s.encode(context.Background(), text, add) })
}

// EncodeChat implements kvcache.ChatTokenizer, rendering as kvcache's own
// tokenizer does.
func (f *failoverTokenizer) EncodeChat(ctx context.Context, _ string, c *kvcache.ChatRequest) ([]uint32, error) {
	req, err := c.TokenizationRequest()
	if err != nil {
		return nil, err
	}
	return f.try(func(s *tokenizerSource) ([]uint32, error) { return s.chat(ctx, req) })
}

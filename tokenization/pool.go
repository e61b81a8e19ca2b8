package tokenization

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"
)

// PoolConfig configures NewPool. The zero value is ready to use.
type PoolConfig struct {
	// Concurrency bounds the encodes running at once; zero means
	// GOMAXPROCS. Cache hits do not count against it.
	Concurrency int
	// PromptCacheBytes bounds the whole-prompt cache (prompt bytes plus 4
	// bytes per token). Zero means DefaultPromptCacheBytes; negative
	// disables the cache.
	PromptCacheBytes int
}

// DefaultPromptCacheBytes is the whole-prompt cache size when
// PoolConfig.PromptCacheBytes is zero.
const DefaultPromptCacheBytes = 64 << 20

// Pool bounds how many prompts are tokenized at once and caches whole
// results in an LRU, so that a prompt seen again (retries, several scorers,
// repeated system prompts sent as completions) costs a lookup. It wraps any
// Tokenizer and, when the tokenizer is a ChatTokenizer, chat requests too.
// It is safe for concurrent use. Returned slices belong to the caller.
type Pool struct {
	tok   Tokenizer
	sem   chan struct{}
	cache *promptCache // nil when disabled

	hits, misses atomic.Uint64
}

// PoolStats counts whole-prompt cache lookups.
type PoolStats struct {
	Hits, Misses uint64
}

// NewPool wraps tok.
func NewPool(tok Tokenizer, cfg PoolConfig) (*Pool, error) {
	if tok == nil {
		return nil, errors.New("tokenization: NewPool: nil tokenizer")
	}
	n := cfg.Concurrency
	if n < 0 {
		return nil, errorf("PoolConfig.Concurrency is %d; want 0 (GOMAXPROCS) or more", n)
	}
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{tok: tok, sem: make(chan struct{}, n)}
	if cfg.PromptCacheBytes >= 0 {
		size := cfg.PromptCacheBytes
		if size == 0 {
			size = DefaultPromptCacheBytes
		}
		p.cache = newPromptCache(size)
	}
	return p, nil
}

// Stats returns the cache counters.
func (p *Pool) Stats() PoolStats { return PoolStats{Hits: p.hits.Load(), Misses: p.misses.Load()} }

// Encode implements Tokenizer.
func (p *Pool) Encode(text string, addSpecialTokens bool) ([]uint32, error) {
	return p.EncodeContext(context.Background(), text, addSpecialTokens)
}

// EncodeContext is Encode; ctx bounds the wait for a free slot.
func (p *Pool) EncodeContext(ctx context.Context, text string, addSpecialTokens bool) ([]uint32, error) {
	kind := byte('t')
	if addSpecialTokens {
		kind = 'T'
	}
	return p.do(ctx, kind, text, func() ([]uint32, error) { return p.tok.Encode(text, addSpecialTokens) })
}

// EncodeChat implements ChatTokenizer; it fails when the wrapped tokenizer
// is not a ChatTokenizer.
func (p *Pool) EncodeChat(req *ChatRequest) ([]uint32, error) {
	return p.EncodeChatContext(context.Background(), req)
}

// EncodeChatContext is EncodeChat; ctx bounds the wait for a free slot.
func (p *Pool) EncodeChatContext(ctx context.Context, req *ChatRequest) ([]uint32, error) {
	ct, ok := p.tok.(ChatTokenizer)
	if !ok {
		return nil, errorf("%T cannot tokenize chat requests", p.tok)
	}
	return p.do(ctx, 'c', chatKey(req), func() ([]uint32, error) { return ct.EncodeChat(req) })
}

// EncodeFor implements ModelTokenizer. When the wrapped tokenizer is a
// ModelTokenizer (Remote) model and ctx reach it and the cache keeps models
// apart; otherwise model is ignored (one local tokenizer serves every
// model name) and ctx bounds the wait for a free slot.
func (p *Pool) EncodeFor(ctx context.Context, model, text string, addSpecialTokens bool) ([]uint32, error) {
	mt, ok := p.tok.(ModelTokenizer)
	if !ok {
		return p.EncodeContext(ctx, text, addSpecialTokens)
	}
	kind := byte('m')
	if addSpecialTokens {
		kind = 'M'
	}
	return p.do(ctx, kind, modelKey(model, text), func() ([]uint32, error) {
		return mt.EncodeFor(ctx, model, text, addSpecialTokens)
	})
}

// EncodeChatFor implements ModelTokenizer, as EncodeFor does for text.
func (p *Pool) EncodeChatFor(ctx context.Context, model string, req *ChatRequest) ([]uint32, error) {
	mt, ok := p.tok.(ModelTokenizer)
	if !ok {
		return p.EncodeChatContext(ctx, req)
	}
	return p.do(ctx, 'C', modelKey(model, chatKey(req)), func() ([]uint32, error) {
		return mt.EncodeChatFor(ctx, model, req)
	})
}

// modelKey prefixes key with model, length-prefixed.
func modelKey(model, key string) string {
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(model)+len(key)), uint64(len(model)))
	return string(append(append(b, model...), key...))
}

// chatKey identifies a chat request in the prompt cache: every field,
// length-prefixed so no two requests share a key. It copies the raw JSON
// rather than re-encoding it, which for a long conversation cost more than
// the cache lookup saved.
func chatKey(req *ChatRequest) string {
	n := len(req.Messages) + len(req.Tools) + len(req.Documents) + len(req.ChatTemplate) + len(req.ChatTemplateKwargs)
	b := make([]byte, 0, n+5*binary.MaxVarintLen64+3)
	for _, f := range [][]byte{req.Messages, req.Tools, req.Documents, []byte(req.ChatTemplate), req.ChatTemplateKwargs} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	flags := byte(0)
	for i, on := range []bool{req.AddGenerationPrompt, req.ContinueFinalMessage, req.AddSpecialTokens} {
		if on {
			flags |= 1 << i
		}
	}
	return string(append(b, flags))
}

func (p *Pool) do(ctx context.Context, kind byte, key string, encode func() ([]uint32, error)) ([]uint32, error) {
	if p.cache != nil {
		if ids, ok := p.cache.get(kind, key); ok {
			p.hits.Add(1)
			return ids, nil
		}
		p.misses.Add(1)
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ids, err := encode()
	<-p.sem
	if err != nil {
		return nil, err
	}
	if p.cache != nil {
		p.cache.put(kind, key, ids)
	}
	return ids, nil
}

// promptCache is a byte-bounded LRU of token IDs by prompt, sharded so that
// concurrent lookups rarely share a lock.
type promptCache struct {
	seed   maphash.Seed
	shards [promptShards]promptShard
}

const promptShards = 8

type promptShard struct {
	mu       sync.Mutex
	entries  map[string]*promptEntry // mu guards all fields
	head     promptEntry             // sentinel of the recency list; head.next is the newest
	bytes    int
	maxBytes int
}

type promptEntry struct {
	key        string
	ids        []uint32
	prev, next *promptEntry
}

func newPromptCache(maxBytes int) *promptCache {
	c := &promptCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		s := &c.shards[i]
		s.entries = map[string]*promptEntry{}
		s.head.prev, s.head.next = &s.head, &s.head
		s.maxBytes = max(maxBytes/promptShards, 1)
	}
	return c
}

func (c *promptCache) shard(key string) *promptShard {
	return &c.shards[maphash.String(c.seed, key)%promptShards]
}

func (c *promptCache) get(kind byte, text string) ([]uint32, bool) {
	key := string(kind) + text
	s := c.shard(key)
	s.mu.Lock()
	e, ok := s.entries[key]
	var ids []uint32
	if ok {
		s.unlinkLocked(e)
		s.pushFrontLocked(e)
		ids = append([]uint32(nil), e.ids...)
	}
	s.mu.Unlock()
	return ids, ok
}

func (c *promptCache) put(kind byte, text string, ids []uint32) {
	key := string(kind) + text
	size := len(key) + 4*len(ids)
	s := c.shard(key)
	if size > s.maxBytes {
		return
	}
	e := &promptEntry{key: key, ids: append([]uint32(nil), ids...)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.entries[key]; ok {
		s.unlinkLocked(old)
		s.bytes -= len(old.key) + 4*len(old.ids)
	}
	s.entries[key] = e
	s.pushFrontLocked(e)
	s.bytes += size
	for s.bytes > s.maxBytes {
		last := s.head.prev
		s.unlinkLocked(last)
		delete(s.entries, last.key)
		s.bytes -= len(last.key) + 4*len(last.ids)
	}
}

// unlinkLocked removes e from the recency list; s.mu must be held.
func (s *promptShard) unlinkLocked(e *promptEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
}

// pushFrontLocked makes e the newest entry; s.mu must be held.
func (s *promptShard) pushFrontLocked(e *promptEntry) {
	e.prev, e.next = &s.head, s.head.next
	s.head.next.prev = e
	s.head.next = e
}

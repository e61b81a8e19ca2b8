package tokenization

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kvtrack/kvtrack/internal/testwait"
)

// countingTokenizer encodes each byte as its value and counts calls; block,
// when set, holds every call until it is closed.
type countingTokenizer struct {
	calls   atomic.Int32
	running atomic.Int32
	peak    atomic.Int32
	block   chan struct{}
}

func (c *countingTokenizer) Encode(text string, add bool) ([]uint32, error) {
	c.calls.Add(1)
	n := c.running.Add(1)
	defer c.running.Add(-1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if c.block != nil {
		<-c.block
	}
	ids := make([]uint32, 0, len(text)+1)
	if add {
		ids = append(ids, 1000)
	}
	for i := 0; i < len(text); i++ {
		ids = append(ids, uint32(text[i]))
	}
	return ids, nil
}

func TestPoolCachesWholePrompts(t *testing.T) {
	inner := &countingTokenizer{}
	p, err := NewPool(inner, PoolConfig{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := p.Encode("abc", true)
	a[0] = 7 // the caller owns the slice: the cache must not see this
	b, _ := p.Encode("abc", true)
	c, _ := p.Encode("abc", false)
	if want := []uint32{1000, 'a', 'b', 'c'}; !slices.Equal(b, want) {
		t.Errorf("cached Encode = %v, want %v", b, want)
	}
	if want := []uint32{'a', 'b', 'c'}; !slices.Equal(c, want) {
		t.Errorf("Encode without special tokens = %v, want %v (a separate cache entry)", c, want)
	}
	if got := inner.calls.Load(); got != 2 {
		t.Errorf("inner tokenizer called %d times, want 2", got)
	}
	if st := p.Stats(); st.Hits != 1 || st.Misses != 2 {
		t.Errorf("Stats = %+v, want 1 hit and 2 misses", st)
	}
}

func TestPoolCacheEvictsLeastRecentlyUsed(t *testing.T) {
	inner := &countingTokenizer{}
	// Each shard holds 100 bytes: a 10-byte prompt costs 11 + 40 bytes,
	// so a shard keeps one entry.
	p, err := NewPool(inner, PoolConfig{PromptCacheBytes: 100 * promptShards})
	if err != nil {
		t.Fatal(err)
	}
	prompts := []string{}
	for i := range 64 {
		prompts = append(prompts, string(rune('A'+i%26))+"123456789")
	}
	for _, s := range prompts {
		p.Encode(s, false)
	}
	for _, s := range prompts {
		p.Encode(s, false)
	}
	if st := p.Stats(); st.Hits >= 64 {
		t.Errorf("Stats = %+v: a bounded cache cannot hit on all 64 prompts", st)
	}
	total := 0
	for i := range p.cache.shards {
		s := &p.cache.shards[i]
		if s.bytes > s.maxBytes {
			t.Errorf("shard %d holds %d bytes, over its bound %d", i, s.bytes, s.maxBytes)
		}
		total += len(s.entries)
	}
	if total == 0 {
		t.Error("cache holds nothing")
	}
}

func TestPoolBoundsConcurrency(t *testing.T) {
	inner := &countingTokenizer{block: make(chan struct{})}
	p, err := NewPool(inner, PoolConfig{Concurrency: 2, PromptCacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() { p.Encode(string(rune('a'+i)), false) })
	}
	testwait.For(t, "both pool slots to be busy", func() bool { return inner.running.Load() >= 2 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.EncodeContext(ctx, "x", false); !errors.Is(err, context.Canceled) {
		t.Errorf("EncodeContext with a cancelled context while full: err = %v, want context.Canceled", err)
	}
	close(inner.block)
	wg.Wait()
	if peak := inner.peak.Load(); peak != 2 {
		t.Errorf("peak concurrent encodes = %d, want 2", peak)
	}
}

func TestPoolRejectsBadConfig(t *testing.T) {
	if _, err := NewPool(&countingTokenizer{}, PoolConfig{Concurrency: -1}); err == nil {
		t.Error("NewPool accepted Concurrency -1")
	}
	if _, err := NewPool(nil, PoolConfig{}); err == nil {
		t.Error("NewPool accepted a nil tokenizer")
	}
	p, _ := NewPool(&countingTokenizer{}, PoolConfig{})
	if _, err := p.EncodeChat(&ChatRequest{}); err == nil {
		t.Error("EncodeChat on a tokenizer without chat support did not fail")
	}
}

// TestPoolChatWithRealTokenizer runs chat and completion requests through
// a pool over the Qwen3 tokenizer from many goroutines (run with -race).
func TestPoolChatWithRealTokenizer(t *testing.T) {
	l := loadLocal(t, "qwen3")
	p, err := NewPool(l, PoolConfig{Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	req := &ChatRequest{Messages: []byte(`[{"role":"user","content":"Hello there"}]`), AddGenerationPrompt: true}
	want, err := l.EncodeChat(req)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				got, err := p.EncodeChat(req)
				if err != nil || !slices.Equal(got, want) {
					t.Errorf("EncodeChat = %v, %v; want %v", got, err, want)
					return
				}
				if ids, err := p.Encode("Hello world", false); err != nil || !slices.Equal(ids, qwenHello) {
					t.Errorf("Encode = %v, %v; want %v", ids, err, qwenHello)
					return
				}
			}
		})
	}
	wg.Wait()
	if st := p.Stats(); st.Hits == 0 {
		t.Errorf("Stats = %+v, want cache hits", st)
	}
}

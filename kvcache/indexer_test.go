package kvcache

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/kvtrack/kvtrack/internal/testredis"
	"github.com/kvtrack/kvtrack/internal/testwait"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// backends returns a configuration for every index backend, for the tests
// that show the Indexer behaves alike over each. The others run on the
// default memory backend.
func backends(t *testing.T) map[string]Config {
	return map[string]Config{
		"memory": {},
		"redis":  {Index: IndexConfig{Backend: IndexRedis}, Redis: redisConfig(testredis.Start(t))},
	}
}

func seq(from, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(from + i)
	}
	return out
}

// newIndexer builds an Indexer with events disabled unless cfg says
// otherwise: package kvcache's own tests have no event source, since the
// ZMQ one (kvevents) imports kvcache. events_test.go runs the real one.
func newIndexer(t *testing.T, cfg Config, opts ...Option) *Indexer {
	t.Helper()
	cfg.Hash.Seed = "42"
	if cfg.Events.Enabled == nil {
		off := false
		cfg.Events.Enabled = &off
	}
	ix, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ix.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return ix
}

// storeKeys records the blocks vLLM would publish for tokens on pod.
func storeKeys(t *testing.T, ix *Indexer, pod string, tokens []uint32, lora, salt string) {
	t.Helper()
	keys, err := ix.keys.keys(nil, tokens, lora, salt)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Index().Add(context.Background(), kvblock.Pod{Addr: pod}, kvblock.TierGPU, keys); err != nil {
		t.Fatal(err)
	}
}

func TestIndexerScore(t *testing.T) {
	for name, cfg := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ix := newIndexer(t, cfg)
			ctx := context.Background()
			prompt := seq(1, 4*16+3)
			storeKeys(t, ix, "a:1", prompt, "", "")
			storeKeys(t, ix, "b:1", prompt[:16], "", "")
			storeKeys(t, ix, "c:1", prompt, "adapter-x", "")

			res, err := ix.Score(ctx, Request{TokenIDs: prompt, Pods: []string{"a:1", "b:1", "c:1", "d:1"}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Blocks != 4 || len(res.Keys) != 4 {
				t.Fatalf("Blocks = %d, Keys = %d, want 4 full blocks", res.Blocks, len(res.Keys))
			}
			want := []PodScore{
				{Pod: "a:1", Score: 1, CachedTokens: 64, Matched: 4, Weighted: 4},
				{Pod: "b:1", Score: 0.25, CachedTokens: 16, Matched: 1, Weighted: 1},
				{Pod: "c:1"},
				{Pod: "d:1"},
			}
			for i, w := range want {
				if res.Pods[i] != w {
					t.Errorf("pod %d = %+v, want %+v", i, res.Pods[i], w)
				}
			}

			res, err = ix.Score(ctx, Request{TokenIDs: prompt, LoRA: "adapter-x", Pods: []string{"a:1", "c:1"}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Pods[0].Matched != 0 || res.Pods[1].Matched != 4 {
				t.Errorf("with LoRA adapter-x: %+v, want only the adapter's pod to match", res.Pods)
			}
		})
	}
}

func TestIndexerScoreRejectsAmbiguousAndUntokenizable(t *testing.T) {
	ix := newIndexer(t, Config{})
	ctx := context.Background()
	if _, err := ix.Score(ctx, Request{Prompt: "hi", TokenIDs: []uint32{1}}); err == nil {
		t.Error("Score with both Prompt and TokenIDs = nil error")
	}
	if _, err := ix.Score(ctx, Request{Prompt: "hello"}); !errors.Is(err, ErrNoTokenizer) {
		t.Errorf("Score(text) without a tokenizer = %v, want ErrNoTokenizer", err)
	}
	if _, err := ix.Score(ctx, Request{Chat: &ChatRequest{Messages: []ChatMessage{{"user", "hi"}}}}); !errors.Is(err, ErrNoTokenizer) {
		t.Errorf("Score(chat) without a tokenizer = %v, want ErrNoTokenizer", err)
	}
	res, err := ix.Score(ctx, Request{Pods: []string{"a:1"}})
	if err != nil || res.Blocks != 0 || res.Pods[0].Score != 0 {
		t.Errorf("Score(empty prompt) = %+v, %v; want zero blocks and score 0", res, err)
	}
}

func TestSpeculateExpiresAfterTTL(t *testing.T) {
	cfg := Config{Speculative: SpeculativeConfig{Enabled: true, TTL: Duration(100 * time.Millisecond)}}
	ix := newIndexer(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ix.Run(ctx) }()
	defer func() { cancel(); <-done }()

	req := Request{TokenIDs: seq(1, 65), Pods: []string{"a:1", "b:1"}}
	res, err := ix.Score(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Speculate(ctx, "b:1", res.Keys); err != nil {
		t.Fatal(err)
	}
	res, err = ix.Score(ctx, req)
	if err != nil || res.Pods[1].Score != 1 || res.Pods[0].Score != 0 {
		t.Fatalf("after Speculate(b): %+v, %v; want b 1, a 0", res.Pods, err)
	}
	if want := defaultSpeculativeTier * 4; res.Pods[1].Weighted != want {
		t.Errorf("speculative Weighted = %v, want %v", res.Pods[1].Weighted, want)
	}
	testwait.For(t, "the speculative entry to expire after its 100ms TTL", func() bool {
		res, err = ix.Score(ctx, req)
		return err == nil && res.Pods[1].Matched == 0
	})
}

func TestStartTwiceIsAnError(t *testing.T) {
	ix := newIndexer(t, Config{})
	if err := ix.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := ix.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Start = %v, want an error saying it was started twice", err)
	}
}

func TestRunReturnsNilWhenCancelled(t *testing.T) {
	ix := newIndexer(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx) }()
	<-ix.Ready()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
}

func redisConfig(addr string) RedisConfig { return RedisConfig{Addr: addr} }

// TestWithClockExpiresSpeculativeEntriesInModelledTime runs without Run:
// the entries expire as the modelled clock passes their deadline and the
// next Speculate call comes, as a simulation drives them.
func TestWithClockExpiresSpeculativeEntriesInModelledTime(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	cfg := Config{Speculative: SpeculativeConfig{Enabled: true, TTL: Duration(2 * time.Second)}}
	ix := newIndexer(t, cfg, WithClock(clock))
	ctx := context.Background()
	first, second := Request{TokenIDs: seq(1, 33), Pods: []string{"a:1"}}, Request{TokenIDs: seq(500, 33), Pods: []string{"a:1"}}
	matched := func(req Request) int {
		t.Helper()
		res, err := ix.Score(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return res.Pods[0].Matched
	}
	speculate := func(req Request) {
		t.Helper()
		res, err := ix.Score(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.Speculate(ctx, "a:1", res.Keys); err != nil {
			t.Fatal(err)
		}
	}

	speculate(first)
	now = now.Add(1999 * time.Millisecond)
	speculate(second)
	if got := matched(first); got != 2 {
		t.Fatalf("first request's blocks 1.999s into a 2s TTL: matched %d, want 2", got)
	}
	now = now.Add(2 * time.Millisecond)
	speculate(second) // the next routing decision, in modelled time
	if got := matched(first); got != 0 {
		t.Errorf("first request's blocks 2.001s into a 2s TTL: matched %d, want 0 (expired)", got)
	}
	if got := matched(second); got != 2 {
		t.Errorf("second request's blocks: matched %d, want 2 (still live)", got)
	}
}

func TestKeyCacheServesRepeatedRequest(t *testing.T) {
	ix := newIndexer(t, Config{})
	ctx := context.Background()
	req := Request{TokenIDs: seq(1, 100), LoRA: "x", Pods: []string{"a:1"}}
	want, err := ix.keys.keys(nil, req.TokenIDs, "x", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		res, err := ix.Score(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Keys, want) {
			t.Fatalf("call %d: keys %v, want %v", i, res.Keys, want)
		}
	}
	if h, m := ix.kcache.hits.Load(), ix.kcache.misses.Load(); h != 1 || m != 1 {
		t.Errorf("key cache hits %d, misses %d; want 1 and 1", h, m)
	}
}

func TestKeyCacheIDSeparatesEveryField(t *testing.T) {
	c := newKeyCache(1 << 20)
	h := xxh3.New128()
	chat := func(edit func(*ChatRequest)) Request {
		ch := &ChatRequest{Messages: []ChatMessage{{"system", "be brief"}, {"user", "hi"}}, AddGenerationPrompt: true}
		if edit != nil {
			edit(ch)
		}
		return Request{Chat: ch}
	}
	reqs := map[string]Request{
		"prompt":               {Prompt: "hello world"},
		"prompt, model":        {Prompt: "hello world", Model: "m2"},
		"prompt, lora":         {Prompt: "hello world", LoRA: "a"},
		"prompt, salt":         {Prompt: "hello world", CacheSalt: "a"},
		"prompt split":         {Prompt: "hello worl"},
		"tokens":               {TokenIDs: []uint32{1, 2, 3}},
		"tokens, other":        {TokenIDs: []uint32{1, 2, 4}},
		"tokens, empty":        {TokenIDs: []uint32{}},
		"chat":                 chat(nil),
		"chat, no gen prompt":  chat(func(c *ChatRequest) { c.AddGenerationPrompt = false }),
		"chat, continue":       chat(func(c *ChatRequest) { c.ContinueFinalMessage = true }),
		"chat, roles swapped":  chat(func(c *ChatRequest) { c.Messages[0].Role, c.Messages[1].Role = "user", "system" }),
		"chat, split content":  chat(func(c *ChatRequest) { c.Messages[0].Content, c.Messages[1].Content = "be brie", "fhi" }),
		"chat, template":       chat(func(c *ChatRequest) { c.ChatTemplate = "{{ messages }}" }),
		"chat, tools":          chat(func(c *ChatRequest) { c.Tools = []any{map[string]any{"type": "function"}} }),
		"chat, empty tools":    chat(func(c *ChatRequest) { c.Tools = []any{} }),
		"chat, documents":      chat(func(c *ChatRequest) { c.Documents = []any{"doc"} }),
		"chat, template kwarg": chat(func(c *ChatRequest) { c.TemplateKWArgs = map[string]any{"enable_thinking": false} }),
		"prompt, no special":   {Prompt: "hello world", NoSpecialTokens: true},
		"chat, special tokens": chat(func(c *ChatRequest) { c.AddSpecialTokens = true }),
		"chat, raw messages":   chat(func(c *ChatRequest) { c.RawMessages = []byte(`[{"role":"user","content":"hi"}]`) }),
		"chat, raw tools":      chat(func(c *ChatRequest) { c.RawTools = []byte(`[]`) }),
		"chat, raw documents":  chat(func(c *ChatRequest) { c.RawDocuments = []byte(`[]`) }),
		"chat, raw kwargs":     chat(func(c *ChatRequest) { c.RawTemplateKWArgs = []byte(`{}`) }),
	}
	seen := map[requestID]string{}
	for name, req := range reqs {
		id, ok := c.id(h, &req)
		if !ok {
			t.Fatalf("%s: not cacheable", name)
		}
		if again, _ := c.id(h, &req); again != id {
			t.Errorf("%s: id changed between calls", name)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share an id", name, other)
		}
		seen[id] = name
	}
	bad := chat(func(c *ChatRequest) { c.Tools = []any{func() {}} })
	if _, ok := c.id(h, &bad); ok {
		t.Error("a request whose tools do not encode as JSON is cacheable")
	}
}

func TestKeyCacheStaysWithinBudget(t *testing.T) {
	const budget = 64 << 10
	c := newKeyCache(budget)
	keys := make([]kvblock.Key, 100) // 864 bytes an entry
	for i := range 10_000 {
		c.put(requestID{uint64(i), uint64(i) * 7919}, keys)
	}
	total, entries := 0, 0
	for i := range c.shards {
		sh := &c.shards[i]
		for _, m := range []map[requestID][]kvblock.Key{sh.cur, sh.old} {
			for _, k := range m {
				total += 8*len(k) + keyEntryOverhead
				entries++
			}
		}
	}
	if total > budget {
		t.Errorf("cache holds %d bytes, budget %d", total, budget)
	}
	if entries < budget/2/864 {
		t.Errorf("cache holds %d entries, want at least half the budget's worth", entries)
	}
	// The most recent entry survives; a long-evicted one does not.
	if _, ok := c.get(requestID{9999, 9999 * 7919}); !ok {
		t.Error("the newest entry was evicted")
	}
	if _, ok := c.get(requestID{0, 0}); ok {
		t.Error("the oldest entry is still cached")
	}
}

func TestKeyCacheDisabled(t *testing.T) {
	ix := newIndexer(t, Config{Hash: HashConfig{KeyCacheBytes: -1}})
	if ix.kcache != nil {
		t.Fatal("hash.keyCacheBytes -1 built a key cache")
	}
	res, err := ix.Score(context.Background(), Request{TokenIDs: seq(1, 33), Pods: []string{"a:1"}})
	if err != nil || res.Blocks != 2 {
		t.Errorf("Score without a key cache = %+v, %v; want 2 blocks", res, err)
	}
}

// TestEventsDisabledOnlyReads is the read-only replica: no event source, and
// AddPod and RemovePod leave the index to whoever applies the events.
func TestEventsDisabledOnlyReads(t *testing.T) {
	off := false
	ix := newIndexer(t, Config{Events: EventsConfig{Enabled: &off}})
	if ix.events != nil {
		t.Fatal("events.enabled false built an event source")
	}
	ctx := context.Background()
	storeKeys(t, ix, "a:1", seq(1, 32), "", "")
	if err := ix.AddPod(ctx, "a:1"); err != nil {
		t.Errorf("AddPod = %v, want nil", err)
	}
	if err := ix.RemovePod(ctx, "a:1"); err != nil {
		t.Errorf("RemovePod = %v, want nil", err)
	}
	res, err := ix.Score(ctx, Request{TokenIDs: seq(1, 33), Pods: []string{"a:1"}})
	if err != nil || res.Pods[0].Matched != 2 {
		t.Errorf("after RemovePod on a read-only Indexer: %+v, %v; want the 2 blocks kept", res.Pods, err)
	}
}

// speculated returns an Indexer on a clock the test moves, with a prompt
// of four blocks speculated on pod a:1.
func speculated(t *testing.T, ttl time.Duration) (ix *Indexer, now *time.Time, req Request, keys []kvblock.Key) {
	t.Helper()
	now = new(time.Time)
	*now = time.Unix(1000, 0)
	cfg := Config{Speculative: SpeculativeConfig{Enabled: true, TTL: Duration(ttl)}}
	ix = newIndexer(t, cfg, WithClock(func() time.Time { return *now }))
	req = Request{TokenIDs: seq(1, 65), Pods: []string{"a:1"}}
	res, err := ix.Score(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Speculate(context.Background(), "a:1", res.Keys); err != nil {
		t.Fatal(err)
	}
	return ix, now, req, res.Keys
}

func matchedOn(t *testing.T, ix *Indexer, req Request) int {
	t.Helper()
	res, err := ix.Score(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return res.Pods[0].Matched
}

// With a clock of its own, speculative entries live exactly TTL of that
// clock's time, with no Run and no ticker: Score expires what is due.
func TestScoreExpiresSpeculationOnTheGivenClock(t *testing.T) {
	ix, now, req, _ := speculated(t, 2*time.Second)
	start := *now
	for _, step := range []struct {
		advance time.Duration
		want    int
	}{
		{0, 4},
		{1999 * time.Millisecond, 4},
		{time.Millisecond, 0}, // the deadline itself is past the TTL
	} {
		*now = now.Add(step.advance)
		if got := matchedOn(t, ix, req); got != step.want {
			t.Errorf("at %v after Speculate: matched %d, want %d", now.Sub(start), got, step.want)
		}
	}
}

// Once the engine's BlockStored confirms the speculated request, the
// index's own entries speak for its blocks: an eviction shows at once, long
// before the TTL.
func TestSpeculationEndsWhenTheEngineConfirms(t *testing.T) {
	ix, now, req, keys := speculated(t, time.Minute)
	ctx := context.Background()
	// What the event path does for the engine's BlockStored of the
	// request's blocks, then its BlockRemoved of the first three.
	events := confirmingIndex{ix.index, ix.spec}
	pod := kvblock.Pod{Addr: "a:1"}
	if err := events.Add(ctx, pod, kvblock.TierGPU, keys); err != nil {
		t.Fatal(err)
	}
	if err := events.Remove(ctx, pod, kvblock.TierGPU, keys[:3]); err != nil {
		t.Fatal(err)
	}
	if got := matchedOn(t, ix, req); got != 0 {
		t.Errorf("after the engine stored blocks 0-3 and evicted 0-2: matched %d, want 0 (speculation retired)", got)
	}
	if err := events.Remove(ctx, pod, kvblock.TierGPU, keys[3:]); err != nil {
		t.Fatal(err)
	}
	// Nothing is left to expire.
	*now = now.Add(time.Minute)
	matchedOn(t, ix, req)
	st, err := ix.Index().Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 0 {
		t.Errorf("%d index entries left after confirmation and expiry, want 0", st.Entries)
	}
}

// A prompt mostly cached on its pod stores only its new blocks; their
// BlockStored confirms the cached blocks before them too, so an eviction
// of those shows at once instead of after the TTL.
func TestStoredBlockConfirmsTheSpeculativePrefixBeforeIt(t *testing.T) {
	ix, _, req, keys := speculated(t, time.Minute)
	ctx := context.Background()
	events := confirmingIndex{ix.index, ix.spec}
	pod := kvblock.Pod{Addr: "a:1"}
	// Blocks 0-2 were cached before the request was routed (their store
	// came earlier); the request computes and stores only block 3.
	if err := ix.index.Add(ctx, pod, kvblock.TierGPU, keys[:3]); err != nil {
		t.Fatal(err)
	}
	if err := events.Add(ctx, pod, kvblock.TierGPU, keys[3:]); err != nil {
		t.Fatal(err)
	}
	if err := events.Remove(ctx, pod, kvblock.TierGPU, keys); err != nil {
		t.Fatal(err)
	}
	if got := matchedOn(t, ix, req); got != 0 {
		t.Errorf("after the engine stored block 3 and evicted blocks 0-3: matched %d, want 0 (speculation on 0-2 retired with 3)", got)
	}
}

// A stored block confirms only its own chain: a speculated prompt that
// shares no block with it keeps its speculative entries.
func TestStoredBlockLeavesOtherChainsSpeculative(t *testing.T) {
	ix, _, req, keys := speculated(t, time.Minute)
	ctx := context.Background()
	other, err := ix.Score(ctx, Request{TokenIDs: seq(900, 65), Pods: []string{"a:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Speculate(ctx, "a:1", other.Keys); err != nil {
		t.Fatal(err)
	}
	events := confirmingIndex{ix.index, ix.spec}
	if err := events.Add(ctx, kvblock.Pod{Addr: "a:1"}, kvblock.TierGPU, other.Keys[3:]); err != nil {
		t.Fatal(err)
	}
	if got := matchedOn(t, ix, req); got != len(keys) {
		t.Errorf("after another prompt's block was stored: matched %d, want %d (still speculative)", got, len(keys))
	}
}

// refusingIndex is a real memory index whose Remove fails while refuse is
// set: an index backend in an outage.
type refusingIndex struct {
	kvblock.Index
	refuse atomic.Bool
}

func (r *refusingIndex) Remove(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	if r.refuse.Load() {
		return errors.New("index unavailable")
	}
	return r.Index.Remove(ctx, pod, tier, keys)
}

// TestSpeculativeRemovalIsRetriedAfterAnIndexError: an expiry the index
// refuses is counted and retried at the next pass, so the entry does not
// outlive its TTL once the index answers again.
func TestSpeculativeRemovalIsRetriedAfterAnIndexError(t *testing.T) {
	mem, err := kvblock.NewMemIndex(kvblock.MemIndexConfig{})
	if err != nil {
		t.Fatal(err)
	}
	idx := &refusingIndex{Index: mem}
	now := time.Unix(1000, 0)
	ix := newIndexer(t, Config{Speculative: SpeculativeConfig{Enabled: true, TTL: Duration(time.Second)}},
		WithIndex(idx), WithClock(func() time.Time { return now }))
	req := Request{TokenIDs: seq(1, 65), Pods: []string{"a:1"}} // 4 blocks looked up (n-1 tokens)
	res, err := ix.Score(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Speculate(t.Context(), "a:1", res.Keys); err != nil {
		t.Fatal(err)
	}
	idx.refuse.Store(true)
	now = now.Add(2 * time.Second)
	if got := matchedOn(t, ix, req); got != 4 {
		t.Fatalf("during the outage the entry matches %d blocks, want 4 (its removal failed)", got)
	}
	if ix.spec.removeErrors.Load() == 0 {
		t.Error("the failed removal was not counted")
	}
	idx.refuse.Store(false)
	ix.spec.expire(t.Context())
	if got := matchedOn(t, ix, req); got != 0 {
		t.Errorf("after the index recovered the expired entry matches %d blocks, want 0", got)
	}
}

// TestCloseClosesTheRedisClient: the index's client New built goes with
// the Indexer, so a program that rebuilds its Indexer leaks no connections.
func TestCloseClosesTheRedisClient(t *testing.T) {
	off := false
	ix, err := New(Config{Hash: HashConfig{Seed: "42"}, Events: EventsConfig{Enabled: &off},
		Index: IndexConfig{Backend: IndexRedis}, Redis: redisConfig(testredis.Start(t))})
	if err != nil {
		t.Fatal(err)
	}
	req := Request{TokenIDs: seq(1, 33), Pods: []string{"a:1"}}
	if _, err := ix.Score(t.Context(), req); err != nil {
		t.Fatalf("Score before Close: %v", err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Score(t.Context(), req); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Score after Close = %v, want the closed client's error", err)
	}
}

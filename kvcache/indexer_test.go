package kvcache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/testredis"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

// backends returns the configurations of every index backend to run the
// Indexer tests against.
func backends(t *testing.T) map[string]Config {
	return map[string]Config{
		"redis": {Index: IndexConfig{Backend: IndexRedis}, Redis: redisConfig(testredis.Start(t))},
	}
}

func seq(from, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(from + i)
	}
	return out
}

func newIndexer(t *testing.T, cfg Config) *Indexer {
	t.Helper()
	cfg.Hash.Seed = "42"
	ix, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
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
			want := []PodScore{{"a:1", 1, 4, 4}, {"b:1", 0.25, 1, 1}, {"c:1", 0, 0, 0}, {"d:1", 0, 0, 0}}
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
	ix := newIndexer(t, backends(t)["redis"])
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

func TestIndexerRemovePodForgetsBlocks(t *testing.T) {
	ix := newIndexer(t, backends(t)["redis"])
	ctx := context.Background()
	storeKeys(t, ix, "a:1", seq(1, 32), "", "")
	if err := ix.RemovePod(ctx, "a:1"); err != nil {
		t.Fatal(err)
	}
	res, err := ix.Score(ctx, Request{TokenIDs: seq(1, 32), Pods: []string{"a:1"}})
	if err != nil || res.Pods[0].Matched != 0 {
		t.Errorf("after RemovePod: %+v, %v; want 0 matched", res.Pods, err)
	}
}

func TestSpeculateExpiresAfterTTL(t *testing.T) {
	cfg := backends(t)["redis"]
	cfg.Speculative = SpeculativeConfig{Enabled: true, TTL: Duration(100 * time.Millisecond)}
	ix := newIndexer(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ix.Run(ctx) }()
	defer func() { cancel(); <-done }()

	req := Request{TokenIDs: seq(1, 64), Pods: []string{"a:1", "b:1"}}
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err = ix.Score(ctx, req)
		if err == nil && res.Pods[1].Matched == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("speculative entry alive 10s after a 100ms TTL: %+v, %v", res.Pods, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunTwiceIsAnError(t *testing.T) {
	ix := newIndexer(t, backends(t)["redis"])
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { errs <- ix.Run(ctx) }()
	go func() { errs <- ix.Run(ctx) }()
	// The second Run returns at once; the first only when ctx is done.
	if err := <-errs; err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Run = %v, want an error saying Run was called twice", err)
	}
	cancel()
	if err := <-errs; err != nil {
		t.Errorf("first Run = %v, want nil after cancel", err)
	}
}

func redisConfig(addr string) redis.Config {
	c := redis.DefaultConfig()
	c.Addr = addr
	return c
}

// With a clock of its own, speculative entries live exactly TTL of that
// clock's time, with no Run and no ticker: Score expires what is due.
func TestSpeculateFollowsTheGivenClock(t *testing.T) {
	now := time.Unix(1000, 0)
	cfg := Config{Speculative: SpeculativeConfig{Enabled: true, TTL: Duration(2 * time.Second)}}
	cfg.Hash.Seed = "42"
	ix, err := New(cfg, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := Request{TokenIDs: seq(1, 64), Pods: []string{"a:1"}}
	res, err := ix.Score(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Speculate(ctx, "a:1", res.Keys); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		advance time.Duration
		want    int
	}{
		{0, 4},
		{1999 * time.Millisecond, 4},
		{time.Millisecond, 0}, // the deadline itself is past the TTL
	} {
		now = now.Add(step.advance)
		res, err := ix.Score(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Pods[0].Matched; got != step.want {
			t.Errorf("at %v after Speculate: matched %d, want %d", now.Sub(time.Unix(1000, 0)), got, step.want)
		}
	}
}

// Once the engine's BlockStored confirms a speculative block, the index's
// own entry speaks for it: an eviction shows at once, long before the TTL.
func TestSpeculationEndsWhenTheEngineConfirms(t *testing.T) {
	now := time.Unix(1000, 0)
	cfg := Config{Speculative: SpeculativeConfig{Enabled: true, TTL: Duration(time.Minute)}}
	cfg.Hash.Seed = "42"
	ix, err := New(cfg, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := Request{TokenIDs: seq(1, 64), Pods: []string{"a:1"}}
	res, err := ix.Score(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Speculate(ctx, "a:1", res.Keys); err != nil {
		t.Fatal(err)
	}
	// What the event path does for the engine's BlockStored of the first
	// three blocks, then its BlockRemoved of them.
	events := confirmingIndex{ix.index, ix.spec}
	pod := kvblock.Pod{Addr: "a:1"}
	if err := events.Add(ctx, pod, kvblock.TierGPU, res.Keys[:3]); err != nil {
		t.Fatal(err)
	}
	if err := events.Remove(ctx, pod, kvblock.TierGPU, res.Keys[:3]); err != nil {
		t.Fatal(err)
	}
	res, err = ix.Score(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Pods[0].Matched; got != 0 {
		t.Errorf("after the engine stored and evicted blocks 0-2: matched %d, want 0 (speculation on them retired)", got)
	}
	// The unconfirmed fourth block still expires with the TTL, once.
	now = now.Add(time.Minute)
	if _, err := ix.Score(ctx, req); err != nil {
		t.Fatal(err)
	}
	st, err := ix.Index().Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 0 {
		t.Errorf("%d index entries left after confirmation and expiry, want 0", st.Entries)
	}
}

package kvcache

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// plainKeys is the reference: vLLM's chain hashed from the root.
func plainKeys(t testing.TB, h *blockhash.Hasher, bs int, tokens []uint32, lora, salt string) []kvblock.Key {
	t.Helper()
	extra := blockhash.RequestExtras{LoRAName: lora, CacheSalt: salt}.PerBlock(len(tokens) / bs)
	keys, err := h.BlockKeys(nil, tokens, extra)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// sharedPrefixPrompts returns n prompts built as a random walk of a prefix
// tree: each extends, or cuts and extends, an earlier one, with lengths
// that are not whole blocks.
func sharedPrefixPrompts(rng *rand.Rand, n int) [][]uint32 {
	prompts := [][]uint32{randTokens(rng, 100+rng.IntN(200))}
	for len(prompts) < n {
		base := prompts[rng.IntN(len(prompts))]
		cut := rng.IntN(len(base) + 1)
		p := append(slices.Clip(base[:cut]), randTokens(rng, 1+rng.IntN(150))...)
		prompts = append(prompts, p)
	}
	return prompts
}

func randTokens(rng *rand.Rand, n int) []uint32 {
	t := make([]uint32, n)
	for i := range t {
		t[i] = uint32(rng.IntN(8)) // a small vocabulary, so prompts share blocks by chance too
	}
	return t
}

func newTestHasher(t testing.TB, algo blockhash.Algorithm, bs int) *blockhash.Hasher {
	t.Helper()
	h, err := blockhash.NewHasher(blockhash.HashConfig{Algorithm: algo, Seed: "42", BlockSize: bs})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestChainCacheKeysEqualPlainHashing(t *testing.T) {
	for _, algo := range blockhash.Algorithms() {
		t.Run(string(algo), func(t *testing.T) {
			const bs = 4
			h := newTestHasher(t, algo, bs)
			c := newChainCache(1 << 20)
			rng := rand.New(rand.NewPCG(1, uint64(len(algo))))
			extras := []struct{ lora, salt string }{{"", ""}, {"a", ""}, {"", "s"}, {"a", "s"}}
			for i, p := range sharedPrefixPrompts(rng, 300) {
				ex := extras[rng.IntN(len(extras))]
				got, err := c.keys(h, bs, nil, p, ex.lora, ex.salt)
				if err != nil {
					t.Fatal(err)
				}
				if want := plainKeys(t, h, bs, p, ex.lora, ex.salt); !slices.Equal(got, want) {
					t.Fatalf("prompt %d (%d tokens, %+v): keys %v, want %v", i, len(p), ex, got, want)
				}
			}
			if c.hits.Load() == 0 || c.misses.Load() == 0 {
				t.Errorf("hits %d, misses %d; want both, the prompts share prefixes", c.hits.Load(), c.misses.Load())
			}
		})
	}
}

func TestChainCacheHashesOnlyTheNewSuffix(t *testing.T) {
	const bs = 16
	h := newTestHasher(t, blockhash.SHA256, bs)
	c := newChainCache(1 << 20)
	first := seq(1, 10*bs)
	second := append(slices.Clip(first[:6*bs]), seq(5000, 3*bs+5)...)
	for _, p := range [][]uint32{first, second} {
		if _, err := c.keys(h, bs, nil, p, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	if hits, misses := c.hits.Load(), c.misses.Load(); hits != 6 || misses != 10+3 {
		t.Errorf("hits %d, misses %d; want 6 (the shared blocks) and 13", hits, misses)
	}
}

// A prompt cached under one LoRA or cache salt must serve none of its keys
// to another: vLLM's keys differ from block 0 on, and so must ours.
func TestChainCacheIsolatesLoRAAndSalt(t *testing.T) {
	const bs = 16
	h := newTestHasher(t, blockhash.SHA256, bs)
	c := newChainCache(1 << 20)
	prompt := seq(1, 20*bs)
	plain, err := c.keys(h, bs, nil, prompt, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range []struct{ lora, salt string }{{"", "salt"}, {"lora", ""}, {"lora", "salt"}, {"", "salt2"}, {"salt", ""}} {
		hitsBefore := c.hits.Load()
		got, err := c.keys(h, bs, nil, prompt, ex.lora, ex.salt)
		if err != nil {
			t.Fatal(err)
		}
		if c.hits.Load() != hitsBefore {
			t.Errorf("%+v: %d blocks served from another request's entries", ex, c.hits.Load()-hitsBefore)
		}
		if want := plainKeys(t, h, bs, prompt, ex.lora, ex.salt); !slices.Equal(got, want) {
			t.Fatalf("%+v: keys differ from plain hashing", ex)
		}
		for i := range got {
			if got[i] == plain[i] {
				t.Errorf("%+v: block %d has the unsalted, adapter-less key", ex, i)
			}
		}
	}
	// And back: the salted entries serve the salted request.
	hitsBefore := c.hits.Load()
	if _, err := c.keys(h, bs, nil, prompt, "", "salt"); err != nil {
		t.Fatal(err)
	}
	if got := c.hits.Load() - hitsBefore; got != 20 {
		t.Errorf("repeated salted prompt: %d hits, want 20", got)
	}
}

func TestChainCacheStaysWithinBudget(t *testing.T) {
	for _, budget := range []int{1, chainRecordBytes * chainWays, 10_000, 64 << 10, 1 << 20} {
		t.Run(fmt.Sprint(budget), func(t *testing.T) {
			const bs = 4
			h := newTestHasher(t, blockhash.SHA256CBOR, bs)
			c := newChainCache(budget)
			if limit := max(budget, chainRecordBytes*chainWays); c.capacity()*chainRecordBytes > limit {
				t.Fatalf("capacity %d records = %d bytes, budget %d", c.capacity(), c.capacity()*chainRecordBytes, limit)
			}
			if budget >= 10_000 && c.capacity()*chainRecordBytes < budget/2 {
				t.Errorf("capacity %d records uses under half the budget %d", c.capacity(), budget)
			}
			rng := rand.New(rand.NewPCG(2, uint64(budget)))
			for i, p := range sharedPrefixPrompts(rng, 400) {
				got, err := c.keys(h, bs, nil, p, "", "")
				if err != nil {
					t.Fatal(err)
				}
				if want := plainKeys(t, h, bs, p, "", ""); !slices.Equal(got, want) {
					t.Fatalf("prompt %d after evictions: keys differ from plain hashing", i)
				}
			}
			if n := c.len(); n > c.capacity() || n == 0 {
				t.Errorf("%d records in use, capacity %d", n, c.capacity())
			}
			for i := range c.shards {
				sh := &c.shards[i]
				if got, want := len(sh.sets)*int(unsafe.Sizeof(chainSet{}))+len(sh.blocks)*int(unsafe.Sizeof(chainBlock{})), int(c.setMask+1)*chainWays*chainRecordBytes; got != 0 && got != want {
					t.Errorf("shard %d holds %d bytes of records, want %d", i, got, want)
				}
			}
		})
	}
}

// A full set keeps the records most recently used.
func TestChainCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newChainCache(1) // one shard, one set
	var d blockhash.Digest
	for tag := uint64(1); tag <= chainWays; tag++ {
		c.put(tag, 0, kvblock.Key(tag), &d)
	}
	if _, _, ok := c.get(1, 0); !ok { // 1 is now the most recent
		t.Fatal("tag 1 missing before the set was full")
	}
	c.put(100, 0, 100, &d)
	if _, _, ok := c.get(2, 0); ok {
		t.Error("tag 2, the least recently used, survived")
	}
	for _, tag := range []uint64{1, 3, 4, 100} {
		if _, _, ok := c.get(tag, 0); !ok {
			t.Errorf("tag %d evicted", tag)
		}
	}
	if _, _, ok := c.get(100, 1); ok {
		t.Error("a record matched with the wrong check")
	}
}

func TestChainCacheConcurrentUse(t *testing.T) {
	const bs = 8
	h := newTestHasher(t, blockhash.SHA256, bs)
	c := newChainCache(32 << 10) // small, so goroutines evict each other
	prompts := sharedPrefixPrompts(rand.New(rand.NewPCG(3, 3)), 60)
	want := make([][]kvblock.Key, len(prompts))
	for i, p := range prompts {
		want[i] = plainKeys(t, h, bs, p, "", "s")
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for range 300 {
				i := rng.IntN(len(prompts))
				got, err := c.keys(h, bs, nil, prompts[i], "", "s")
				if err != nil || !slices.Equal(got, want[i]) {
					errs <- fmt.Sprintf("prompt %d: keys differ (err %v)", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestIndexerUsesChainCache(t *testing.T) {
	ix := newIndexer(t, Config{Hash: HashConfig{KeyCacheBytes: -1}})
	vk, ok := ix.keys.(vllmKeyer)
	if !ok || vk.chain == nil {
		t.Fatal("the vllm scheme built no chain cache by default")
	}
	req := Request{TokenIDs: seq(1, 64), Pods: []string{"a:1"}}
	for range 2 {
		if _, err := ix.Score(t.Context(), req); err != nil {
			t.Fatal(err)
		}
	}
	if h, m := vk.chain.hits.Load(), vk.chain.misses.Load(); h != 4 || m != 4 {
		t.Errorf("chain cache hits %d, misses %d; want 4 and 4", h, m)
	}
}

func TestChainCacheDisabled(t *testing.T) {
	ix := newIndexer(t, Config{Hash: HashConfig{ChainCacheBytes: -1}})
	if vk := ix.keys.(vllmKeyer); vk.chain != nil {
		t.Fatal("hash.chainCacheBytes -1 built a chain cache")
	}
	tok := newIndexer(t, Config{KeyScheme: KeySchemeTokens})
	if _, ok := tok.keys.(tokenKeyer); !ok {
		t.Fatal("the tokens scheme does not use the token keyer")
	}
}

// Two prefixes whose tags collide continue with equal tags when their next
// blocks are equal; their checks must still tell them apart, or the
// colliding prefix's continuations would be served to the other.
func TestChainIDCheckCarriesHistoryPastATagCollision(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for i := range 1000 {
		tag := rng.Uint64()
		a, b := chainID{tag, rng.Uint64()}, chainID{tag, rng.Uint64()}
		if a.hist == b.hist {
			continue
		}
		block := randTokens(rng, 16)
		for depth := range 3 {
			a, b = a.next(block), b.next(block)
			if a.tag != b.tag {
				t.Fatalf("case %d depth %d: tags %x and %x; the tag must depend only on the parent tag and the block", i, depth, a.tag, b.tag)
			}
			if a.check() == b.check() {
				t.Errorf("case %d depth %d: checks agree (%x) for prefixes with different histories", i, depth, a.check())
			}
		}
	}
}

// The root state separates LoRA and salt even where their concatenations
// agree.
func TestChainCacheRootSeparatesExtras(t *testing.T) {
	c := newChainCache(1 << 10)
	seen := map[chainID]string{}
	for _, ex := range [][2]string{{"", ""}, {"a", ""}, {"", "a"}, {"ab", ""}, {"a", "b"}, {"", "ab"}} {
		id := c.root(ex[0], ex[1])
		if other, dup := seen[id]; dup {
			t.Errorf("lora %q salt %q share a root with %s", ex[0], ex[1], other)
		}
		seen[id] = fmt.Sprintf("%q/%q", ex[0], ex[1])
	}
}

// get returns the key and Digest cached for the block with this tag and
// check, as keys reads them.
func (c *chainCache) get(tag uint64, check uint32) (kvblock.Key, blockhash.Digest, bool) {
	sh := c.shard(tag)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if idx := c.lookupLocked(sh, tag, check); idx >= 0 {
		return sh.blocks[idx].key, sh.blocks[idx].digest, true
	}
	return 0, blockhash.Digest{}, false
}

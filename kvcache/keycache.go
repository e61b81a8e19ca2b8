package kvcache

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/zeebo/xxh3"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// keyCache remembers the block keys of recent requests. Hashing a 32k-
// character prompt's ~500 blocks the way vLLM does (SHA-256 over a pickle
// per block) costs about as much as everything else in a score put
// together, and a chat request's tokenizer-cache lookup costs two JSON
// encodings of the conversation; a request seen again (the same system
// prompt sent as a completion, a retry, several scorers over one request)
// skips both for one 128-bit hash of the request.
//
// A request is identified by a seeded 128-bit XXH3 of every field that
// decides its tokens and keys. The seed is random per process, so inputs
// cannot be crafted to collide; an accidental collision (odds about 2^-128
// per pair) would only mis-score one request.
//
// Each shard keeps two generations of entries: lookups promote hits from the
// old generation to the current one, and when the current one reaches half
// the shard's budget it becomes the old one and the previous old one is
// dropped. That bounds memory by the budget and approximates LRU without
// per-entry bookkeeping.
type keyCache struct {
	seed   uint64
	shards [keyCacheShards]keyCacheShard

	hits, misses atomic.Uint64
}

const keyCacheShards = 16

// keyEntryOverhead approximates an entry's cost beyond its keys: the map
// slot, the slice header and the id.
const keyEntryOverhead = 64

type requestID struct{ hi, lo uint64 }

type keyCacheShard struct {
	mu       sync.Mutex // guards the fields below
	cur, old map[requestID][]kvblock.Key
	curBytes int
	genBytes int // budget of one generation
}

func newKeyCache(maxBytes int) *keyCache {
	var seed [8]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails
	c := &keyCache{seed: binary.LittleEndian.Uint64(seed[:])}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.cur = make(map[requestID][]kvblock.Key)
		sh.genBytes = max(maxBytes/keyCacheShards/2, 1)
	}
	return c
}

func (c *keyCache) shard(id requestID) *keyCacheShard {
	return &c.shards[id.lo%keyCacheShards]
}

// get returns the keys cached for id, as put was given them: the length
// and capacity both mean what the caller put. The slice is shared: callers
// must not modify it (appending beyond its capacity copies).
func (c *keyCache) get(id requestID) ([]kvblock.Key, bool) {
	sh := c.shard(id)
	sh.mu.Lock()
	keys, ok := sh.cur[id]
	if !ok {
		if keys, ok = sh.old[id]; ok {
			delete(sh.old, id)
			sh.putLocked(id, keys)
		}
	}
	sh.mu.Unlock()
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return keys, ok
}

// put caches keys for id, keeping its length and capacity (the Indexer
// keeps the lookup count as the length and every key within the
// capacity); keys[:cap(keys)] must not be modified afterwards.
func (c *keyCache) put(id requestID, keys []kvblock.Key) {
	sh := c.shard(id)
	if 8*cap(keys)+keyEntryOverhead > sh.genBytes {
		return
	}
	sh.mu.Lock()
	if _, ok := sh.cur[id]; !ok {
		sh.putLocked(id, keys)
	}
	sh.mu.Unlock()
}

func (sh *keyCacheShard) putLocked(id requestID, keys []kvblock.Key) {
	size := 8*cap(keys) + keyEntryOverhead
	if sh.curBytes+size > sh.genBytes {
		sh.old, sh.cur, sh.curBytes = sh.cur, make(map[requestID][]kvblock.Key, len(sh.cur)), 0
	}
	sh.cur[id] = keys
	sh.curBytes += size
}

// id hashes everything about req that decides its block keys: the prompt
// in whichever form it comes, the model (which picks the remote tokenizer
// and chat template), the LoRA name and the cache salt. h is a scratch
// hasher. ok is false for a request that must not be cached (one whose
// tools or template arguments do not encode as JSON).
func (c *keyCache) id(h *xxh3.Hasher128, req *Request) (id requestID, ok bool) {
	h.ResetSeed(c.seed)
	w := idWriter{h}
	w.str(req.Model)
	w.str(req.LoRA)
	w.str(req.CacheSalt)
	switch {
	case req.TokenIDs != nil:
		w.tag('i')
		w.bytes(tokenBytes(req.TokenIDs))
	case req.Chat != nil:
		w.tag('c')
		ch := req.Chat
		w.int(len(ch.Messages))
		for _, m := range ch.Messages {
			w.str(m.Role)
			w.str(m.Content)
		}
		w.str(ch.ChatTemplate)
		w.bool(ch.AddGenerationPrompt)
		w.bool(ch.ContinueFinalMessage)
		w.bool(ch.AddSpecialTokens)
		for _, raw := range []json.RawMessage{ch.RawMessages, ch.RawTools, ch.RawDocuments, ch.RawTemplateKWArgs} {
			if raw == nil {
				w.int(-1)
			} else {
				w.bytes(raw)
			}
		}
		// Tools, documents and template arguments reach the template as
		// JSON (see poolTokenizer), so their JSON is what identifies them.
		for _, v := range []any{ch.Tools, ch.Documents, ch.TemplateKWArgs} {
			if !w.json(v) {
				return requestID{}, false
			}
		}
	default:
		w.tag('p')
		w.bool(req.NoSpecialTokens)
		w.str(req.Prompt)
	}
	s := h.Sum128()
	return requestID{s.Hi, s.Lo}, true
}

// idWriter writes length-prefixed fields, so that no two different
// requests produce the same byte stream.
type idWriter struct{ h *xxh3.Hasher128 }

func (w idWriter) int(n int) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(n))
	_, _ = w.h.Write(b[:])
}

func (w idWriter) tag(t byte) { _, _ = w.h.Write([]byte{t}) }

func (w idWriter) bool(v bool) {
	if v {
		w.tag(1)
	} else {
		w.tag(0)
	}
}

func (w idWriter) str(s string) {
	w.int(len(s))
	_, _ = w.h.WriteString(s)
}

func (w idWriter) bytes(b []byte) {
	w.int(len(b))
	_, _ = w.h.Write(b)
}

func (w idWriter) json(v any) bool {
	if v == nil {
		w.int(-1)
		return true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	w.bytes(b)
	return true
}

// tokenBytes is tokens' memory as bytes: what the id hashes. Byte order is
// the machine's, which is fine for an in-process identity.
func tokenBytes(tokens []uint32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(tokens))), 4*len(tokens))
}

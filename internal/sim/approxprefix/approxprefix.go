// Package approxprefix is a dependency-free re-implementation of the
// Gateway API Inference Extension's approximate prefix-cache routing (GIE
// v1.5.0: the approx-prefix-cache-producer data producer and the
// prefix-cache-scorer), for the simulation. It never sees an engine's
// cache: it hashes the request's text in blocks of BlockTokens*4
// characters, chained with xxhash from a seed of the model name and the
// cache_salt, and remembers in a per-pod LRU which pod it sent each block
// to.
//
// The differential test in this package drives GIE's own plugin code and
// this one with the same request stream and the same routing decisions and
// requires identical scores for every pod at every step; it is the only
// place that imports GIE, so the simulator and the kvtrack CLI do not
// depend on the Kubernetes stack.
package approxprefix

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// GIE v1.5.0's defaults (approximateprefix/types.go).
const (
	// DefaultBlockTokens is blockSizeTokens; with autoTune the pods'
	// reported block size replaces it.
	DefaultBlockTokens = 16
	// CharsPerToken is GIE's fixed estimate of characters per token.
	CharsPerToken = 4
	// DefaultMaxBlocks is maxPrefixBlocksToMatch.
	DefaultMaxBlocks = 256
	// DefaultLRUCapacity is lruCapacityPerServer; with autoTune a pod's
	// reported number of KV blocks replaces it.
	DefaultLRUCapacity = 31250
)

// Config sets up an Indexer. Zero fields take GIE's defaults.
type Config struct {
	Model       string // the request's target model, the chain's seed
	BlockTokens int
	MaxBlocks   int
	LRUCapacity int // per pod
}

// Indexer is the approximate plugin's state for a fixed set of pods,
// numbered 0..Pods-1 (at most 64). Not safe for concurrent use.
type Indexer struct {
	blockChars int
	maxBlocks  int
	model      string

	lrus   []*simplelru.LRU[uint64, struct{}]
	owners map[uint64]uint64 // block hash -> bit set of pods whose LRU holds it

	hashes []uint64
}

// MaxPods is the most pods an Indexer tracks.
const MaxPods = 64

// New returns an empty Indexer for pods pods.
func New(cfg Config, pods int) (*Indexer, error) {
	if pods <= 0 || pods > MaxPods {
		return nil, fmt.Errorf("approxprefix: %d pods: must be 1..%d", pods, MaxPods)
	}
	if cfg.BlockTokens == 0 {
		cfg.BlockTokens = DefaultBlockTokens
	}
	if cfg.MaxBlocks == 0 {
		cfg.MaxBlocks = DefaultMaxBlocks
	}
	if cfg.LRUCapacity == 0 {
		cfg.LRUCapacity = DefaultLRUCapacity
	}
	if cfg.BlockTokens < 0 || cfg.MaxBlocks < 0 || cfg.LRUCapacity < 0 {
		return nil, fmt.Errorf("approxprefix: block tokens %d, max blocks %d, LRU capacity %d: must be >= 0", cfg.BlockTokens, cfg.MaxBlocks, cfg.LRUCapacity)
	}
	ix := &Indexer{
		blockChars: cfg.BlockTokens * CharsPerToken,
		maxBlocks:  cfg.MaxBlocks,
		model:      cfg.Model,
		owners:     make(map[uint64]uint64),
	}
	for p := range pods {
		bit := uint64(1) << p
		lru, err := simplelru.NewLRU(cfg.LRUCapacity, func(h uint64, _ struct{}) {
			if s := ix.owners[h] &^ bit; s != 0 {
				ix.owners[h] = s
			} else {
				delete(ix.owners, h)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("approxprefix: %w", err)
		}
		ix.lrus = append(ix.lrus, lru)
	}
	return ix, nil
}

// Hash returns the request's block hashes, as GIE's hashPrompt: full blocks
// only, at most MaxBlocks of them; h_0's predecessor is xxhash(model ||
// salt), and h_i = xxhash(block_i || LE64(h_{i-1})). text is what GIE
// hashes: a completion's prompt, or the JSON of a chat request's messages.
// The slice is reused by the next call.
func (ix *Indexer) Hash(text, salt string) []uint64 {
	ix.hashes = ix.hashes[:0]
	if len(text) < ix.blockChars || ix.blockChars <= 0 {
		return ix.hashes
	}
	n := min(len(text)/ix.blockChars, ix.maxBlocks)
	var d xxhash.Digest
	d.Reset()
	d.WriteString(ix.model)
	d.WriteString(salt)
	prev := d.Sum64()
	var le [8]byte
	for i := range n {
		d.Reset()
		d.WriteString(text[i*ix.blockChars : (i+1)*ix.blockChars])
		binary.LittleEndian.PutUint64(le[:], prev)
		d.Write(le[:])
		prev = d.Sum64()
		ix.hashes = append(ix.hashes, prev)
	}
	return ix.hashes
}

// Match writes into matched, one entry per pod, the number of hashes GIE's
// matchLongestPrefix credits it with: walking the blocks until one no pod
// holds, every pod holding each block gets one.
func (ix *Indexer) Match(hashes []uint64, matched []int) {
	clear(matched)
	for _, h := range hashes {
		set := ix.owners[h]
		if set == 0 {
			break
		}
		for p := range matched {
			if set&(1<<p) != 0 {
				matched[p]++
			}
		}
	}
}

// Scores writes each pod's prefix score, GIE's prefix-cache-scorer:
// matched/len(hashes), 0 for a prompt shorter than a block.
func Scores(matched []int, total int, dst []float64) {
	for p, m := range matched {
		dst[p] = 0
		if total > 0 {
			dst[p] = float64(m) / float64(total)
		}
	}
}

// Record is GIE's PreRequest: the request's blocks are now taken to be
// cached on pod. Every hash enters the pod's LRU (which may evict), then
// the pod joins each hash's owners, in GIE's order.
func (ix *Indexer) Record(hashes []uint64, pod int) {
	for _, h := range hashes {
		ix.lrus[pod].Add(h, struct{}{})
	}
	bit := uint64(1) << pod
	for _, h := range hashes {
		ix.owners[h] |= bit
	}
}

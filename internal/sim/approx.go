package sim

import (
	"context"
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// approximate is the Gateway API Inference Extension's approximate prefix
// plugin (v1.5.0 approx-prefix-cache-producer + prefix-cache-scorer): it
// never sees the engines' caches. It hashes the prompt text in blocks of
// blockSizeTokens*4 characters, chained with xxhash from a seed of the model
// name; scores each pod by the blocks its own per-pod LRU says the pod
// holds; and after routing adds the prompt's blocks to the chosen pod's LRU,
// whose capacity autoTune sets to the pod's number of KV blocks.
type approximate struct {
	affinity
	blockChars int
	maxBlocks  int
	seed       uint64

	lrus   []*simplelru.LRU[uint64, struct{}]
	owners map[uint64]uint64 // block hash -> bit set of pods whose LRU holds it

	hashes []uint64
	counts []int
	prefix []float64
}

// GIE's defaults: blockSizeTokens 16 (64 characters), maxPrefixBlocksToMatch
// 256.
const (
	approxBlockTokens    = 16
	approxCharsPerToken  = 4
	approxMaxBlocks      = 256
	approxModel          = "sim-model"
	maxPodsForApproxSets = 64
)

func newApproximate(a affinity, pods, lruCapacity int) (*approximate, error) {
	ap := &approximate{
		affinity:   a,
		blockChars: approxBlockTokens * approxCharsPerToken,
		maxBlocks:  approxMaxBlocks,
		seed:       xxhash.Sum64String(approxModel),
		owners:     make(map[uint64]uint64),
		counts:     make([]int, pods),
		prefix:     make([]float64, pods),
	}
	for p := range pods {
		bit := uint64(1) << p
		lru, err := simplelru.NewLRU(lruCapacity, func(h uint64, _ struct{}) {
			if s := ap.owners[h] &^ bit; s != 0 {
				ap.owners[h] = s
			} else {
				delete(ap.owners, h)
			}
		})
		if err != nil {
			return nil, err
		}
		ap.lrus = append(ap.lrus, lru)
	}
	return ap, nil
}

// hashPrompt is GIE's hashing: full blocks only, at most maxBlocks of them,
// h_i = xxhash(block_i || LE64(h_{i-1})), h_{-1} = xxhash(model).
func (ap *approximate) hashPrompt(text string) []uint64 {
	ap.hashes = ap.hashes[:0]
	n := min(len(text)/ap.blockChars, ap.maxBlocks)
	prev := ap.seed
	var d xxhash.Digest
	var le [8]byte
	for i := range n {
		d.Reset()
		d.WriteString(text[i*ap.blockChars : (i+1)*ap.blockChars])
		binary.LittleEndian.PutUint64(le[:], prev)
		d.Write(le[:])
		prev = d.Sum64()
		ap.hashes = append(ap.hashes, prev)
	}
	return ap.hashes
}

func (ap *approximate) route(_ context.Context, r *request, c cluster) (int, error) {
	hashes := ap.hashPrompt(r.text)
	clear(ap.counts)
	// GIE's matchLongestPrefix: walk the blocks until one no pod holds,
	// crediting every pod that holds each block.
	for _, h := range hashes {
		set := ap.owners[h]
		if set == 0 {
			break
		}
		for p := range ap.counts {
			if set&(1<<p) != 0 {
				ap.counts[p]++
			}
		}
	}
	for p := range ap.prefix {
		ap.prefix[p] = 0
		if len(hashes) > 0 {
			ap.prefix[p] = float64(ap.counts[p]) / float64(len(hashes))
		}
	}
	pod := ap.pick(ap.prefix, c)
	// PreRequest: record the prompt as now cached on the chosen pod.
	bit := uint64(1) << pod
	for _, h := range hashes {
		ap.lrus[pod].Add(h, struct{}{})
		ap.owners[h] |= bit
	}
	return pod, nil
}

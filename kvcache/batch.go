package kvcache

import (
	"context"
	"errors"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// BatchPrompt is one prompt of a batch (Request.Prompts): text, tokenized
// like Request.Prompt, or token IDs used as given.
type BatchPrompt struct {
	Text     string
	TokenIDs []uint32
}

// errNestedBatch guards scoreBatch's recursion into score.
var errNestedBatch = errors.New("kvcache: a batch prompt sets both Text and TokenIDs")

// scoreBatch scores a batch as vLLM serves it: every prompt runs as its own
// request on the pod the batch is routed to, so a pod's Matched, Weighted
// and the Blocks are sums over the prompts, and its Score is the mean of the
// prompts' scores weighted by their blocks (sum of matched blocks over sum of
// blocks, when each prompt's score is its matched fraction). Keys is the
// concatenation of the prompts' keys; Batch holds them per prompt, which is
// what SpeculateResult records, and BatchBlocks each prompt's Blocks.
func (ix *Indexer) scoreBatch(ctx context.Context, req *Request) (Result, error) {
	res := Result{Pods: make([]PodScore, len(req.Pods)), Batch: make([][]kvblock.Key, 0, len(req.Prompts)),
		BatchBlocks: make([]int, 0, len(req.Prompts))}
	for i, p := range req.Pods {
		res.Pods[i].Pod = p
	}
	weighted := make([]float64, len(req.Pods))
	one := *req
	one.Prompts = nil
	for _, p := range req.Prompts {
		if p.Text != "" && p.TokenIDs != nil {
			return Result{}, errNestedBatch
		}
		one.Prompt, one.TokenIDs = p.Text, p.TokenIDs
		r, err := ix.score(ctx, &one)
		if err != nil {
			return Result{}, err
		}
		res.Blocks += r.Blocks
		res.Keys = append(res.Keys, r.Keys...)
		res.Batch = append(res.Batch, r.Keys)
		res.BatchBlocks = append(res.BatchBlocks, r.Blocks)
		for i, ps := range r.Pods {
			res.Pods[i].Matched += ps.Matched
			res.Pods[i].Weighted += ps.Weighted
			weighted[i] += ps.Score * float64(r.Blocks)
		}
	}
	if res.Blocks > 0 {
		for i := range res.Pods {
			res.Pods[i].Score = weighted[i] / float64(res.Blocks)
		}
	}
	return res, nil
}

// SpeculateResult records res's keys on pod, the pod res was routed to: a
// batch's prompts each as their own chain, as the engine will store them.
// See Speculate. res.Blocks (a batch's prompt: res.BatchBlocks) tells
// whether the prompt ends at a block boundary (vLLM looks up n-1 of its n
// tokens, so one block fewer than there are keys) or continues past its
// last full block; a prompt without Blocks is taken to end at one.
func (ix *Indexer) SpeculateResult(ctx context.Context, pod string, res Result) error {
	if res.Batch == nil {
		return ix.speculate(ctx, pod, res.Keys, partialTail(res.Blocks, res.Keys))
	}
	for i, keys := range res.Batch {
		var blocks int
		if i < len(res.BatchBlocks) {
			blocks = res.BatchBlocks[i]
		}
		if err := ix.speculate(ctx, pod, keys, partialTail(blocks, keys)); err != nil {
			return err
		}
	}
	return nil
}

// partialTail reports whether a prompt of blocks looked-up blocks and keys
// continues past its last full block.
func partialTail(blocks int, keys []kvblock.Key) bool {
	return blocks > 0 && blocks == len(keys)
}

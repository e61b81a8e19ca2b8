package sim

import "context"

// prefixIndex is what the precise router needs from kvtrack: for a prompt's
// token IDs, how many leading blocks each candidate pod holds according to
// the KV events it has indexed (and its speculative entries), and a way to
// tell it where the request went.
type prefixIndex interface {
	// score writes one entry per pod into matched and returns the number of
	// full blocks in the prompt.
	score(ctx context.Context, tokens []uint32, pods []string, matched []int) (blocks int, err error)
	// routed records that the last scored request went to pod.
	routed(ctx context.Context, pod string) error
}

// precise routes with kvtrack's view of the pods' caches.
type precise struct {
	affinity
	idx     prefixIndex
	addrs   []string
	matched []int
	prefix  []float64
	audit   func(r *request, matched []int, c cluster) // Config.audit
}

func (p *precise) route(ctx context.Context, r *request, c cluster) (int, error) {
	blocks, err := p.idx.score(ctx, r.prompt, p.addrs, p.matched)
	if err != nil {
		return 0, err
	}
	for i, m := range p.matched {
		p.prefix[i] = 0
		if blocks > 0 {
			p.prefix[i] = float64(m) / float64(blocks)
		}
	}
	pod := p.pick(p.prefix, c)
	if p.audit != nil {
		p.audit(r, p.matched, c)
	}
	return pod, p.idx.routed(ctx, p.addrs[pod])
}

package sim

import "context"

// prefixIndex is what the precise router needs from kvtrack: for a prompt's
// token IDs, how many leading blocks each candidate pod holds according to
// the KV events it has indexed (and its speculative entries), and a way to
// tell it where the request went.
type prefixIndex interface {
	// score writes one entry per pod into matched and returns the number of
	// full blocks in the prompt.
	score(ctx context.Context, tokens []uint32, salt string, pods []string, matched []int) (blocks int, err error)
	// routed records that the last scored request went to pod.
	routed(ctx context.Context, pod string) error
	// indexed returns the number of GPU blocks the index holds for pod.
	indexed(pod string) int
}

// precise routes with kvtrack's view of the pods' caches.
type precise struct {
	affinity
	idx     prefixIndex
	addrs   []string
	matched []int
	prefix  []float64
	audit   func(r *request, matched []int, c cluster) // Config.audit

	// placement weighs, for a prompt no pod holds any block of, each pod's
	// free room in the index (Config.PlacementWeight); 0 turns it off.
	placement float64
	capacity  int // blocks per pod
	bonus     []float64
}

func (p *precise) route(ctx context.Context, r *request, c cluster) (int, error) {
	blocks, err := p.idx.score(ctx, r.prompt, r.salt, p.addrs, p.matched)
	if err != nil {
		return 0, err
	}
	for i, m := range p.matched {
		p.prefix[i] = 0
		if blocks > 0 {
			p.prefix[i] = float64(m) / float64(blocks)
		}
	}
	pod := p.pick(p.prefix, p.placementBonus(), c)
	if p.audit != nil {
		p.audit(r, p.matched, c)
	}
	return pod, p.idx.routed(ctx, p.addrs[pod])
}

// placementBonus returns the placement term for the last scored request,
// or nil: a new prefix (no pod holds any of it) is drawn to the pods whose
// caches the index sees emptiest, where it evicts the least.
func (p *precise) placementBonus() []float64 {
	if p.placement == 0 || p.capacity <= 0 {
		return nil
	}
	for _, m := range p.matched {
		if m > 0 {
			return nil
		}
	}
	if p.bonus == nil {
		p.bonus = make([]float64, len(p.addrs))
	}
	for i, a := range p.addrs {
		p.bonus[i] = p.placement * max(0, 1-float64(p.idx.indexed(a))/float64(p.capacity))
	}
	return p.bonus
}

package sim

import (
	"context"
	"math/rand/v2"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// cluster is what a router may observe of the pool when it routes.
type cluster interface {
	// numPods returns the number of pods.
	numPods() int
	// load returns pod i's queue: requests waiting plus the one in prefill.
	load(i int) int
	// running returns the number of requests pod i is decoding.
	running(i int) int
	// kvUsage returns the fraction of pod i's KV blocks held by requests.
	kvUsage(i int) float64
	// truePrefix returns how many of keys, from the first, pod i holds or
	// is about to compute for a request in its queue or in prefill. Only the
	// oracle may call it: it is the truth no real router sees.
	truePrefix(i int, keys []kvblock.Key) int
}

// router picks a pod for each request.
type router interface {
	route(ctx context.Context, r *request, c cluster) (int, error)
}

type roundRobin struct{ next int }

func (rr *roundRobin) route(_ context.Context, _ *request, c cluster) (int, error) {
	i := rr.next % c.numPods()
	rr.next++
	return i, nil
}

type randomRouter struct{ rng *rand.Rand }

func (r *randomRouter) route(_ context.Context, _ *request, c cluster) (int, error) {
	return r.rng.IntN(c.numPods()), nil
}

// leastLoaded picks the shortest queue, then the fewest running requests,
// then at random.
type leastLoaded struct{ rng *rand.Rand }

func (l *leastLoaded) route(_ context.Context, _ *request, c cluster) (int, error) {
	best, ties := -1, 0
	for i := range c.numPods() {
		if best >= 0 {
			dl := c.load(i) - c.load(best)
			dr := c.running(i) - c.running(best)
			if dl > 0 || (dl == 0 && dr > 0) {
				continue
			}
			if dl == 0 && dr == 0 {
				ties++
				if l.rng.IntN(ties) == 0 {
					best = i
				}
				continue
			}
		}
		best, ties = i, 1
	}
	return best, nil
}

// affinity is the scoring shared by the prefix-aware routers, as the EPP
// of llm-d's precise-prefix-cache guide configures it: score =
// wPrefix*prefix[i] + wKV*(1-kvUsage[i]) + wQueue*queue[i], with kvUsage
// vLLM's kv_cache_usage (blocks held by requests over capacity, GIE's
// kv-cache-utilization-scorer) and queue[i] GIE's min-max normalised
// queue-scorer (1 for the shortest queue); ties broken at random.
type affinity struct {
	wPrefix, wKV, wQueue float64
	rng                  *rand.Rand
}

// pick returns the best pod; bonus, if not nil, adds to each pod's score.
func (a *affinity) pick(prefix, bonus []float64, c cluster) int {
	minQ, maxQ := c.load(0), c.load(0)
	for i := 1; i < c.numPods(); i++ {
		minQ, maxQ = min(minQ, c.load(i)), max(maxQ, c.load(i))
	}
	best, bestScore, ties := 0, -1.0, 0
	for i := range c.numPods() {
		q := 1.0
		if maxQ > minQ {
			q = float64(maxQ-c.load(i)) / float64(maxQ-minQ)
		}
		s := a.wPrefix*prefix[i] + a.wKV*(1-c.kvUsage(i)) + a.wQueue*q
		if bonus != nil {
			s += bonus[i]
		}
		switch {
		case s > bestScore:
			best, bestScore, ties = i, s, 1
		case s == bestScore:
			ties++
			if a.rng.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return best
}

// oracle scores each pod by the prompt prefix it really holds, counting the
// blocks its queued and prefilling requests are about to compute: perfect
// knowledge, the bar precise routing is measured against.
type oracle struct {
	affinity
	prefix []float64
}

func (o *oracle) route(_ context.Context, r *request, c cluster) (int, error) {
	o.prefix = o.prefix[:0]
	for i := range c.numPods() {
		f := 0.0
		if r.promptBlocks > 0 {
			f = float64(c.truePrefix(i, r.keys[:r.promptBlocks])) / float64(r.promptBlocks)
		}
		o.prefix = append(o.prefix, f)
	}
	return o.pick(o.prefix, nil, c), nil
}

// replicated is a router deployed as several replicas that share nothing
// but what they observe; each request reaches one of them at random.
type replicated struct {
	replicas []router
	rng      *rand.Rand
}

func (r *replicated) route(ctx context.Context, req *request, c cluster) (int, error) {
	if len(r.replicas) == 1 {
		return r.replicas[0].route(ctx, req, c)
	}
	return r.replicas[r.rng.IntN(len(r.replicas))].route(ctx, req, c)
}

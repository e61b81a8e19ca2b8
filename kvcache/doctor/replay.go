package doctor

import (
	"context"
	"sync"
	"time"

	"github.com/kvtrack/kvtrack/kvevents"
)

// replayResult is what one replay endpoint answered.
type replayResult struct {
	from     uint64
	replies  int  // messages replayed before the end marker (or giving up)
	ended    bool // the end marker arrived
	topicFrm bool // replies carried the topic frame (vLLM ≈v0.25+)
	err      error
}

// checkReplays asks every stream's replay endpoint, concurrently, for the
// messages from the first sequence number the stream showed (0 when it
// showed none), each bounded by timeout.
func (c *collector) checkReplays(ctx context.Context, timeout time.Duration) map[streamKey]replayResult {
	type job struct {
		key  streamKey
		ep   string
		from uint64
	}
	var jobs []job
	c.mu.Lock()
	for _, k := range c.order {
		s := c.byKey[k]
		if s.ReplayEndpoint != "" {
			jobs = append(jobs, job{k, s.ReplayEndpoint, s.FirstSeq})
		}
	}
	c.mu.Unlock()
	out := make(map[streamKey]replayResult, len(jobs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			r := askReplay(ctx, j.ep, j.from, timeout)
			mu.Lock()
			out[j.key] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// askReplay sends one replay request, as the router does on a gap, and
// counts the answer until the end marker, a bad frame, or timeout without
// a reply; a huge buffer cannot hold the doctor past 4 x timeout.
func askReplay(ctx context.Context, ep string, from uint64, timeout time.Duration) replayResult {
	r := replayResult{from: from}
	r.err = kvevents.Replay(ctx, ep, from, kvevents.ReplayOptions{Timeout: timeout, Total: 4 * timeout}, func(rep kvevents.ReplayReply) error {
		r.replies++
		r.topicFrm = rep.HasTopic
		return nil
	})
	r.ended = r.err == nil
	return r
}

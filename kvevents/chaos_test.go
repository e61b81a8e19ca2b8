package kvevents

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestChaos drives a publisher through random message loss, engine restarts
// (sequence back to 0, cache emptied) and replays, with both replay reply
// forms, and checks that once it settles the index equals the publisher's
// ground truth exactly.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	for _, seed := range []uint64{1, 2} {
		t.Run("seed="+string(rune('0'+seed)), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			idx := newMemIndex(t)
			p := connectPool(t, idx, testLogger(t))
			pub := newGoPublisher(t, pubOpts{layout: []string{"array", "map"}[seed%2], replyTopic: seed%2 == 0, topic: "kv@chaos@model"})
			addPub(t, p, pub)

			const batches = 1500
			sinceRestart, restarts := 0, 0
			next := uint64(1 << 20)
			for i := range batches {
				if sinceRestart > 300 && restarts < 2 && rng.IntN(200) == 0 {
					pub.restart()
					restarts++
					sinceRestart = 0
					// A restart shows only if the consumer hears the new
					// process before its sequence passes the old one's.
					pub.waitSubscribed(func() bool { return p.Stats().Restarts == uint64(restarts) })
				}
				sinceRestart++
				events := make([]mp, 0, 3)
				for range 1 + rng.IntN(3) {
					held := slices.Collect(maps.Keys(pub.groundTruth()))
					switch r := rng.IntN(100); {
					case r < 1:
						events = append(events, pub.cleared())
					case r < 45 && len(held) > 0:
						e := held[rng.IntN(len(held))]
						events = append(events, pub.removed([]uint64{uint64(e.Key)}, e.Tier.String()))
					case r < 50 && len(held) > 0: // vLLM stores the same block again
						e := held[rng.IntN(len(held))]
						events = append(events, pub.stored([]uint64{uint64(e.Key)}, 0, seqTokens(0, 16), e.Tier.String()))
					default:
						n := 1 + rng.IntN(4)
						medium := []string{"GPU", "GPU", "CPU"}[rng.IntN(3)]
						events = append(events, pub.stored(hashes(next, n), next-1, seqTokens(0, 16*n), medium))
						next += uint64(n)
					}
				}
				drop := i < batches-5 && rng.IntN(10) == 0
				pub.publish(drop, events...)
			}
			waitIndexEquals(t, idx, pub.groundTruth)
			s := p.Stats()
			t.Logf("stats: %+v", s)
			if s.Replays == 0 || s.Restarts != uint64(restarts) {
				t.Errorf("replays, restarts = %d, %d; want > 0, %d", s.Replays, s.Restarts, restarts)
			}
		})
	}
}

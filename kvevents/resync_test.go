package kvevents

import (
	"strings"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/testredis"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

// TestResyncAfterRedisOutage kills a real redis-server while events flow
// and starts it again, empty. A pod with a replay endpoint is replayed to
// the engine's state; one without is cleared and refills from new events.
// Either way no block survives that the index cannot vouch for.
func TestResyncAfterRedisOutage(t *testing.T) {
	for _, withReplay := range []bool{true, false} {
		name := map[bool]string{true: "replay endpoint", false: "no replay endpoint"}[withReplay]
		t.Run(name, func(t *testing.T) {
			srv := testredis.StartServer(t, testredis.Options{})
			rc := redis.DefaultConfig()
			rc.Addr = srv.Addr()
			rc.DialTimeout = time.Duration(100 * time.Millisecond)
			idx, err := redis.New(rc)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { idx.Close() })
			var logs logLines
			p := startPool(t, Config{Mode: ModeConnect, ReplayTimeout: time.Second, ResyncInterval: 20 * time.Millisecond}, idx, logs.option())
			pub := newGoPublisher(t, pubOpts{noReplay: !withReplay})
			addPub(t, p, pub)

			pub.publish(false, pub.stored(hashes(100, 4), 0, seqTokens(0, 64), "GPU"))
			pub.publish(false, pub.stored(hashes(200, 2), 0, seqTokens(100, 32), "CPU"))
			waitIndexEquals(t, idx, pub.groundTruth)

			srv.Kill()
			pub.publish(false, pub.removed(hashes(102, 2), "GPU"), pub.stored(hashes(300, 2), 0, seqTokens(200, 32), "GPU"))
			eventually(t, "the failed write", func() bool { return p.Stats().IndexErrors > 0 })
			pub.publish(false, pub.stored(hashes(400, 1), 0, seqTokens(300, 16), "GPU")) // held
			srv.Restart()                                                                // empty: every block written before is gone

			if withReplay {
				eventually(t, "the resync", func() bool { return p.Stats().Resynced == 1 })
				waitIndexEquals(t, idx, pub.groundTruth)
			} else {
				eventually(t, "the pod cleared", func() bool { return p.Stats().ResyncCleared == 1 })
				// Only what was published after the failed write is known.
				cold := map[refEntry]int{{pub.pod, kvblock.TierGPU, 400}: 1}
				waitIndexEquals(t, idx, func() map[refEntry]int { return cold })
				pub.publish(false, pub.stored(hashes(500, 1), 0, seqTokens(400, 16), "GPU"))
				cold[refEntry{pub.pod, kvblock.TierGPU, 500}] = 1
				waitIndexEquals(t, idx, func() map[refEntry]int { return cold })
			}
			if n := logs.count("index backend failed a write"); n != 1 {
				t.Errorf("%d log lines for the failed write, want 1:\n%s", n, strings.Join(logs.lines, "\n"))
			}
			if s := p.Stats(); s.Resynced+s.ResyncCleared != 1 {
				t.Errorf("resynced %d, cleared %d; want one of them once", s.Resynced, s.ResyncCleared)
			}
		})
	}
}

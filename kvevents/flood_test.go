package kvevents

import (
	"context"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// slowIndex is the memory index behind a slow link: each Add takes at
// least delay, as a remote index under load would.
type slowIndex struct {
	*kvblock.MemIndex
	delay time.Duration
}

func (x slowIndex) Add(ctx context.Context, pod kvblock.Pod, tier kvblock.Tier, keys []kvblock.Key) error {
	time.Sleep(x.delay)
	return x.MemIndex.Add(ctx, pod, tier, keys)
}

// TestFloodBounded publishes far faster than the index applies: the
// queues stay within their bounds, what does not fit is dropped and
// counted, and replays restore the index to the engine's state. The
// queue holds 1024 messages, so the byte budget is what binds.
func TestFloodBounded(t *testing.T) {
	mem := newMemIndex(t)
	idx := slowIndex{MemIndex: mem, delay: 50 * time.Microsecond}
	const maxQueued = 8 << 10
	cfg := Config{Mode: ModeConnect, Workers: 1, QueueSize: 1024, MaxHeld: 16, ReplayTimeout: 2 * time.Second,
		Limits: Limits{MaxQueuedBytes: maxQueued}}
	p := startPool(t, cfg, idx)
	pub := newGoPublisher(t, pubOpts{})
	addPub(t, p, pub)

	const n = 800 // below the replay ROUTER's default HWM of 1000, which vLLM keeps too
	for i := range uint64(n) {
		evs := []mp{pub.stored([]uint64{1000 + i}, 0, seqTokens(int(i), 16), "GPU")}
		if i%5 == 4 {
			evs = append(evs, pub.removed([]uint64{1000 + i - 3}, "GPU"))
		}
		pub.publish(false, evs...)
	}
	// A sequence gap shows only when a later message arrives: keep
	// publishing empty batches until the stream has caught up.
	repeatUntil(t, "the stream to catch up", func() { pub.publish(false) },
		func() bool { return p.streamNext(pub.pod) > pub.lastSeq() })
	waitIndexEquals(t, mem, pub.groundTruth)

	s := p.Stats()
	if s.DroppedQueueFull+s.DroppedHeld == 0 {
		t.Errorf("dropped = %d (queue) + %d (held), want some: the flood did not outrun the index", s.DroppedQueueFull, s.DroppedHeld)
	}
	if s.QueuedBytesPeak > maxQueued {
		t.Errorf("queued bytes peaked at %d, over the %d limit", s.QueuedBytesPeak, maxQueued)
	}
	if s.Replays == 0 {
		t.Errorf("replays = 0, want the drops repaired by replay")
	}
	eventually(t, "every queued byte released", func() bool { return p.Stats().QueuedBytes == 0 })
	t.Logf("received %d, applied %d events, dropped %d at the queue and %d held, %d replays (%d failed), %d lost, peak %d queued bytes",
		s.Received, s.Applied, s.DroppedQueueFull, s.DroppedHeld, s.Replays, s.ReplayFailures, s.Lost, s.QueuedBytesPeak)
}

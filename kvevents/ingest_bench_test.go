package kvevents

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// benchPub is a PUB socket that never drops (HWM 0) so that every message
// of a benchmark run arrives.
func benchPub(b *testing.B) (*zmq.Socket, string) {
	b.Helper()
	pub, err := zmq.NewSocket(zmq.PUB)
	if err != nil {
		b.Fatal(err)
	}
	pub.SetLinger(0)
	pub.SetSndhwm(0)
	if err := pub.Bind("tcp://127.0.0.1:*"); err != nil {
		b.Fatal(err)
	}
	ep, err := pub.GetLastEndpoint()
	if err != nil {
		b.Fatal(err)
	}
	return pub, ep
}

// publishN sends n messages [topic, seq, payload] from seq first on.
func publishN(pub *zmq.Socket, first uint64, n int, payload []byte) {
	topic := []byte("kv@10.0.0.1:8000@model")
	for i := range n {
		seq := binary.BigEndian.AppendUint64(make([]byte, 0, 8), first+uint64(i))
		pub.SendBytes(topic, zmq.SNDMORE)
		pub.SendBytes(seq, zmq.SNDMORE)
		pub.SendBytes(payload, 0)
	}
}

// BenchmarkIngestZMQ measures 1-block BlockStored batches through a real
// libzmq tcp loopback socket into an index ("pool"), beside a bare receive
// loop on the same kind of socket ("raw"), the ceiling the pool is held to.
// Sender and receivers share the process (and, here, 2 cores).
func BenchmarkIngestZMQ(b *testing.B) {
	payload := []byte(batch3(benchStored("array", 1, rand.New(rand.NewPCG(5, 6)))))

	b.Run("raw", func(b *testing.B) {
		pub, ep := benchPub(b)
		defer pub.Close()
		sub, err := zmq.NewSocket(zmq.SUB)
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Close()
		sub.SetLinger(0)
		sub.SetRcvhwm(0)
		sub.SetSubscribe("")
		sub.Connect(ep)
		// Wait for the subscription: send probes until one arrives.
		sub.SetRcvtimeo(10 * time.Millisecond)
		for {
			publishN(pub, 0, 1, payload)
			if _, err := sub.RecvMessageBytes(0); err == nil {
				break
			}
		}
		for { // drain probes
			if _, err := sub.RecvMessageBytes(zmq.DONTWAIT); err != nil {
				break
			}
		}
		sub.SetRcvtimeo(-1)
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		go publishN(pub, 0, b.N, payload)
		for range b.N {
			if _, err := sub.RecvMessageBytes(0); err != nil {
				b.Fatal(err)
			}
		}
		el := time.Since(start).Seconds()
		b.ReportMetric(float64(b.N)/el, "msg/s")
		b.ReportMetric(float64(b.N)/el, "blocks/s")
	})

	b.Run("pool", func(b *testing.B) {
		pub, ep := benchPub(b)
		defer pub.Close()
		idx := newMemIndex(b)
		// The SUB's HWM is lifted: a message libzmq dropped unseen would
		// leave the wait for b.N messages below hanging.
		p, err := NewPool(Config{Mode: ModeConnect, Workers: 2, QueueSize: 1 << 16, ReceiveHWM: 1 << 30, Limits: Limits{EventsPerSecond: 1e12}}, idx)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		defer func() { cancel(); <-done }()
		pod := kvblock.Pod{Addr: "10.0.0.1:8000"}
		if err := p.AddPod(ctx, pod, ep, ""); err != nil {
			b.Fatal(err)
		}
		seq := uint64(0)
		for !p.streamStarted(pod) {
			publishN(pub, seq, 1, payload)
			seq++
			time.Sleep(time.Millisecond)
		}
		// Wait for one more probe: the counts below start after it.
		r := p.Stats().Received
		publishN(pub, seq, 1, payload)
		seq++
		for p.Stats().Received <= r || p.Stats().Applied == 0 { // (earlier probes may arrive too: not !=)
			time.Sleep(time.Millisecond)
		}
		base := p.Stats()
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		go publishN(pub, seq, b.N, payload)
		for {
			s := p.Stats()
			if s.Applied+s.DroppedQueueFull-base.Applied-base.DroppedQueueFull >= uint64(b.N) {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		el := time.Since(start).Seconds()
		s := p.Stats()
		b.ReportMetric(float64(b.N)/el, "msg/s")
		b.ReportMetric(float64(s.Applied-base.Applied)/el, "blocks/s")
		b.ReportMetric(float64(s.DroppedQueueFull-base.DroppedQueueFull), "dropped")
	})
}

// BenchmarkApplyBlockStored is one 1-block BlockStored batch decoded and
// applied to an index by a worker, without the socket.
func BenchmarkApplyBlockStored(b *testing.B) {
	for _, check := range []bool{false, true} {
		b.Run(fmt.Sprintf("hashcheck=%v", check), func(b *testing.B) {
			// The rate limit is on (its check is part of the cost) but
			// high enough never to reject.
			cfg := Config{Mode: ModeConnect, Limits: Limits{EventsPerSecond: 1e12}}
			ev := batch3(benchStored("array", 1, rand.New(rand.NewPCG(5, 6))))
			if check {
				cfg.Hash = blockhash.HashConfig{Algorithm: blockhash.SHA256CBOR, Seed: "42", BlockSize: 16}
				// The sample's root store, which the check re-hashes.
				ev = batch3(mpArr(mpStr("BlockStored"), mpUints(sampleHash0), mpNil(), mpTokens(seqTokens(100, 16)), mpInt(16),
					mpNil(), mpStr("GPU"), mpNil(), mpArr(mpNil()), mpInt(0), mpStr("full_attention"), mpNil()))
			}
			p, err := NewPool(cfg, newMemIndex(b))
			if err != nil {
				b.Fatal(err)
			}
			s := &stream{pod: kvblock.Pod{Addr: "10.0.0.1:8000"}}
			w := p.workers[0]
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				p.clock.Add(1000) // the receiver's clock, 1 us per message
				w.apply(ctx, s, uint64(i), ev, false)
			}
			if got := p.Stats().HashMismatches; got != 0 {
				b.Fatalf("%d hash mismatches", got)
			}
		})
	}
}

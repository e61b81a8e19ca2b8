package vllmfake

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvevents"
)

func TestPublisherSendsVLLMFrames(t *testing.T) {
	pub, err := NewPublisher(PublisherConfig{Endpoint: "tcp://127.0.0.1:*", Topic: "kv@10.0.0.1:8000@m"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := kvevents.NewSubscriber(pub.Endpoint(), kvevents.SubscriberOptions{TopicFilter: "kv@"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pub.WaitSubscribed(ctx); err != nil {
		t.Fatal(err)
	}
	events := []Event{{Kind: BlockRemoved, Hashes: []kvblock.Key{42}}}
	for want := range uint64(3) {
		seq, err := pub.Publish(1.5, events)
		if err != nil || seq != want {
			t.Fatalf("Publish = %d, %v; want %d, nil", seq, err, want)
		}
		msg, err := sub.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(msg) != 3 || string(msg[0]) != "kv@10.0.0.1:8000@m" || binary.BigEndian.Uint64(msg[1]) != want {
			t.Fatalf("frames %q, want [topic, seq %d, payload]", msg, want)
		}
		if !bytes.Equal(msg[2], AppendBatch(nil, LayoutArray, 1.5, 0, events)) {
			t.Errorf("payload %x is not the encoded batch", msg[2])
		}
	}
}

func TestPublisherFansOutToEveryEndpoint(t *testing.T) {
	var subs []*zmq.Socket
	var eps []string
	for range 2 {
		sub, err := zmq.NewSocket(zmq.SUB)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		sub.SetLinger(0)
		sub.SetRcvtimeo(5 * time.Second)
		if err := sub.SetSubscribe("kv@"); err != nil {
			t.Fatal(err)
		}
		if err := sub.Bind("tcp://127.0.0.1:*"); err != nil {
			t.Fatal(err)
		}
		ep, err := sub.GetLastEndpoint()
		if err != nil {
			t.Fatal(err)
		}
		subs, eps = append(subs, sub), append(eps, ep)
	}
	pub, err := NewPublisher(PublisherConfig{Endpoint: eps[0], Also: eps[1:], Topic: "kv@10.0.0.1:8000@m"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// A socket handles new connections only when its owner calls into it,
	// so the subscribers are prodded while the publisher waits.
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, sub := range subs {
			sub.GetEvents()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		err := pub.WaitSubscribers(ctx, 2)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	if _, err := pub.Publish(1, []Event{{Kind: BlockRemoved, Hashes: []kvblock.Key{7}}}); err != nil {
		t.Fatal(err)
	}
	for i, sub := range subs {
		if msg, err := sub.RecvMessageBytes(0); err != nil || len(msg) != 3 {
			t.Errorf("subscriber %d: %d frames, %v; want the message", i, len(msg), err)
		}
	}
}

func TestPublisherAnswersReplay(t *testing.T) {
	for _, topicFrame := range []bool{false, true} {
		pub, err := NewPublisher(PublisherConfig{Endpoint: "tcp://127.0.0.1:*", Topic: "kv@x@m",
			ReplayEndpoint: "tcp://127.0.0.1:*", ReplayTopicFrame: topicFrame, BufferSteps: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		events := []Event{{Kind: BlockRemoved, Hashes: []kvblock.Key{42}}}
		for range 3 { // seq 0 falls out of the 2-message buffer
			if _, err := pub.Publish(1.5, events); err != nil {
				t.Fatal(err)
			}
		}
		pub.SkipSequence(1)
		if seq, _ := pub.Publish(1.5, events); seq != 4 {
			t.Fatalf("after SkipSequence(1), Publish used seq %d, want 4", seq)
		}
		var got []uint64
		err = kvevents.Replay(context.Background(), pub.ReplayEndpoint(), 0, kvevents.ReplayOptions{Timeout: 5 * time.Second},
			func(r kvevents.ReplayReply) error {
				if r.HasTopic != topicFrame || (topicFrame && string(r.Topic) != "kv@x@m") {
					return fmt.Errorf("reply of seq %d has topic frame %q, want one: %v", r.Seq, r.Topic, topicFrame)
				}
				got = append(got, r.Seq)
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0] != 2 || got[1] != 4 {
			t.Errorf("topicFrame=%v: replayed seqs %v, want [2 4]", topicFrame, got)
		}
	}
}

package vllmfake

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

func TestPublisherSendsVLLMFrames(t *testing.T) {
	pub, err := NewPublisher(PublisherConfig{Endpoint: "tcp://127.0.0.1:*", Topic: "kv@10.0.0.1:8000@m"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
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
	if err := sub.Connect(pub.Endpoint()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
		msg, err := sub.RecvMessageBytes(0)
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
		dealer, err := zmq.NewSocket(zmq.DEALER)
		if err != nil {
			t.Fatal(err)
		}
		defer dealer.Close()
		dealer.SetLinger(0)
		dealer.SetRcvtimeo(5 * time.Second)
		if err := dealer.Connect(pub.ReplayEndpoint()); err != nil {
			t.Fatal(err)
		}
		if _, err := dealer.SendMessage([]byte{}, binary.BigEndian.AppendUint64(nil, 0)); err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for {
			msg, err := dealer.RecvMessageBytes(0)
			if err != nil {
				t.Fatal(err)
			}
			msg = msg[1:] // the ROUTER's empty delimiter
			if topicFrame {
				if string(msg[0]) != "kv@x@m" {
					t.Fatalf("reply %q lacks the topic frame", msg)
				}
				msg = msg[1:]
			}
			if len(msg) != 2 || len(msg[0]) != 8 {
				t.Fatalf("reply %q, want [seq, payload]", msg)
			}
			seq := binary.BigEndian.Uint64(msg[0])
			if seq == ^uint64(0) {
				break
			}
			got = append(got, seq)
		}
		if len(got) != 2 || got[0] != 2 || got[1] != 4 {
			t.Errorf("topicFrame=%v: replayed seqs %v, want [2 4]", topicFrame, got)
		}
	}
}

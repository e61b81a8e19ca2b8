package vllmfake

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// PublisherConfig configures a Publisher the way vLLM's KVEventsConfig
// configures its ZmqEventPublisher.
type PublisherConfig struct {
	// Endpoint is bound when it contains "*" or "::" or is ipc:// or
	// inproc:// (vLLM's rule), and connected to otherwise: a consumer that
	// binds one SUB socket lets every engine connect to it.
	Endpoint string
	// Also lists further endpoints to connect to, for several consumers
	// that each bind their own (every message goes to each of them).
	Also []string
	// Topic is the first frame of every message, e.g. "kv@10.0.0.7:8000@m".
	Topic string
	// Layout is the events' msgpack layout; the zero value is vLLM v0.23's
	// positional arrays.
	Layout Layout
	// Rank is the engine's data-parallel rank, written into every batch.
	Rank int
	// ReplayEndpoint, when set, is bound by a ROUTER socket that answers
	// vLLM's replay requests from the last BufferSteps messages; empty
	// means no replay endpoint (vLLM's default).
	ReplayEndpoint string
	// BufferSteps is the number of sent messages kept for replay (vLLM's
	// buffer_steps). Default 10000.
	BufferSteps int
	// ReplayTopicFrame makes replay replies carry the topic frame, as vLLM
	// does since about v0.25 ([topic, seq, payload]); false sends the
	// older [seq, payload].
	ReplayTopicFrame bool
}

// Publisher sends KV-event batches as a vLLM engine does: frames
// [topic, seq as 8-byte big-endian, msgpack EventBatch], seq counting from 0.
//
// The socket is an XPUB, which is a PUB on the wire, so that
// WaitSubscribed can see a subscriber's subscription arrive: a PUB drops
// everything sent before that (ZMQ's "slow joiner"), and a simulation that
// must not lose its first events has to wait for it. A Publisher is safe for
// concurrent use.
type Publisher struct {
	cfg PublisherConfig

	mu       sync.Mutex // guards sock, seq, buf, sent, subs
	sock     *zmq.Socket
	seq      uint64
	buf      []byte
	subs     int       // subscriptions seen by WaitSubscribers
	sent     []sentMsg // replay buffer, oldest first; only with a replay endpoint
	replayEP string    // the bound replay endpoint; "" without one

	replayStop chan struct{} // closed by Close; nil without a replay endpoint
	replayDone chan struct{}
}

type sentMsg struct {
	seq     uint64
	payload []byte
}

// NewPublisher opens the socket.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	sock, err := zmq.NewSocket(zmq.XPUB)
	if err != nil {
		return nil, fmt.Errorf("vllmfake: publisher socket: %w", err)
	}
	// vLLM's defaults: hwm 100,000; closing must not hang on a gone peer.
	// Verbose: every subscriber's subscription reaches WaitSubscribed, not
	// only the first one for a topic.
	err = errors.Join(sock.SetSndhwm(100_000), sock.SetLinger(0), sock.SetXpubVerbose(1))
	if err == nil {
		if bindsEndpoint(cfg.Endpoint) {
			err = sock.Bind(cfg.Endpoint)
		} else {
			err = sock.Connect(cfg.Endpoint)
		}
	}
	for _, ep := range cfg.Also {
		if err == nil {
			err = sock.Connect(ep)
		}
	}
	if err != nil {
		sock.Close()
		return nil, fmt.Errorf("vllmfake: publisher on %s: %w", cfg.Endpoint, err)
	}
	p := &Publisher{cfg: cfg, sock: sock}
	if cfg.ReplayEndpoint != "" {
		if p.cfg.BufferSteps <= 0 {
			p.cfg.BufferSteps = 10_000
		}
		router, err := zmq.NewSocket(zmq.ROUTER)
		if err == nil {
			err = errors.Join(router.SetLinger(0), router.SetRcvtimeo(20*time.Millisecond))
			if err == nil {
				err = router.Bind(cfg.ReplayEndpoint)
			}
			if err != nil {
				router.Close()
			}
		}
		if err != nil {
			sock.Close()
			return nil, fmt.Errorf("vllmfake: replay endpoint %s: %w", cfg.ReplayEndpoint, err)
		}
		p.replayEP, _ = router.GetLastEndpoint()
		p.replayStop, p.replayDone = make(chan struct{}), make(chan struct{})
		go p.serveReplay(router) // router belongs to serveReplay from here on
	}
	return p, nil
}

// ReplayEndpoint returns the endpoint the replay ROUTER is bound to, with a
// wildcard port resolved, or "" without one.
func (p *Publisher) ReplayEndpoint() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replayEP
}

// serveReplay answers replay requests as vLLM's publisher thread does:
// a request is [identity, "", start_seq]; the reply is every buffered
// message from start_seq on, then the END marker. It owns router.
func (p *Publisher) serveReplay(router *zmq.Socket) {
	defer close(p.replayDone)
	defer router.Close()
	for {
		select {
		case <-p.replayStop:
			return
		default:
		}
		frames, err := router.RecvMessageBytes(0)
		if err != nil || len(frames) != 3 || len(frames[1]) != 0 || len(frames[2]) != 8 {
			continue // a timeout, or vLLM's "Invalid replay request"
		}
		from := binary.BigEndian.Uint64(frames[2])
		p.mu.Lock()
		var msgs []sentMsg
		for _, m := range p.sent {
			if m.seq >= from {
				msgs = append(msgs, m)
			}
		}
		p.mu.Unlock()
		var seqb [8]byte
		for _, m := range msgs {
			binary.BigEndian.PutUint64(seqb[:], m.seq)
			p.reply(router, frames[0], seqb[:], m.payload)
		}
		p.reply(router, frames[0], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, nil)
	}
}

// reply sends one replay reply; router belongs to serveReplay.
func (p *Publisher) reply(router *zmq.Socket, id, seq, payload []byte) {
	parts := []any{id, []byte{}}
	if p.cfg.ReplayTopicFrame {
		parts = append(parts, p.cfg.Topic)
	}
	parts = append(parts, seq, payload)
	_, _ = router.SendMessage(parts...)
}

// SkipSequence consumes n sequence numbers without sending anything, as
// vLLM does for a batch it failed to encode: subscribers see a gap.
func (p *Publisher) SkipSequence(n uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq += n
}

func bindsEndpoint(ep string) bool {
	return strings.Contains(ep, "*") || strings.Contains(ep, "::") ||
		strings.HasPrefix(ep, "ipc://") || strings.HasPrefix(ep, "inproc://")
}

// Endpoint returns the endpoint the socket is bound to, with a wildcard
// port resolved, or the endpoint it connected to.
func (p *Publisher) Endpoint() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ep, err := p.sock.GetLastEndpoint(); err == nil && ep != "" {
		return ep
	}
	return p.cfg.Endpoint
}

// WaitSubscribed blocks until a subscriber's subscription has reached the
// socket, so that what is published next is delivered, or ctx is done.
func (p *Publisher) WaitSubscribed(ctx context.Context) error {
	return p.WaitSubscribers(ctx, 1)
}

// WaitSubscribers blocks until n subscriptions have reached the socket
// since it opened (one per subscriber, each subscribing once), or ctx is
// done.
func (p *Publisher) WaitSubscribers(ctx context.Context, n int) error {
	for {
		p.mu.Lock()
		msg, err := p.sock.RecvBytes(zmq.DONTWAIT)
		if err == nil && len(msg) > 0 && msg[0] == 1 {
			p.subs++
		}
		subs := p.subs
		p.mu.Unlock()
		if subs >= n {
			return nil
		}
		if err == nil {
			continue
		}
		if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
			return fmt.Errorf("vllmfake: waiting for a subscriber: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vllmfake: %d of %d subscribers on %s: %w", subs, n, p.cfg.Endpoint, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// Publish sends one batch of events stamped with ts (seconds since the
// epoch, vLLM's time.time()) and returns its sequence number.
func (p *Publisher) Publish(ts float64, events []Event) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = AppendBatch(p.buf[:0], p.cfg.Layout, ts, p.cfg.Rank, events)
	return p.sendLocked(p.buf)
}

// Encode returns the payload Publish would send for events, for a caller
// that sends it later with SendPayload.
func (p *Publisher) Encode(dst []byte, ts float64, events []Event) []byte {
	return AppendBatch(dst, p.cfg.Layout, ts, p.cfg.Rank, events)
}

// SendPayload sends an encoded EventBatch as the next message and returns
// its sequence number.
func (p *Publisher) SendPayload(payload []byte) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sendLocked(payload)
}

// sendLocked sends payload under the next sequence number. p.mu must be held.
func (p *Publisher) sendLocked(payload []byte) (uint64, error) {
	if p.sock == nil {
		return 0, errors.New("vllmfake: publish on a closed publisher")
	}
	seq := p.seq
	p.seq++ // vLLM consumes the number even when sending fails
	var seqb [8]byte
	binary.BigEndian.PutUint64(seqb[:], seq)
	if _, err := p.sock.Send(p.cfg.Topic, zmq.SNDMORE); err != nil {
		return seq, fmt.Errorf("vllmfake: publish: %w", err)
	}
	if _, err := p.sock.SendBytes(seqb[:], zmq.SNDMORE); err != nil {
		return seq, fmt.Errorf("vllmfake: publish: %w", err)
	}
	if _, err := p.sock.SendBytes(payload, 0); err != nil {
		return seq, fmt.Errorf("vllmfake: publish: %w", err)
	}
	if p.replayStop != nil {
		if len(p.sent) >= p.cfg.BufferSteps {
			p.sent = append(p.sent[:0], p.sent[1:]...)
		}
		p.sent = append(p.sent, sentMsg{seq: seq, payload: append([]byte(nil), payload...)})
	}
	return seq, nil
}

// Close closes the socket. Publishing afterwards is an error.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sock == nil {
		return nil
	}
	err := p.sock.Close()
	p.sock = nil
	if p.replayStop != nil {
		close(p.replayStop)
		p.mu.Unlock()
		<-p.replayDone // serveReplay takes mu
		p.mu.Lock()
	}
	return err
}

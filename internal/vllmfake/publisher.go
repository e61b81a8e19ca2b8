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

	mu   sync.Mutex // guards sock, seq, buf, subs
	sock *zmq.Socket
	seq  uint64
	buf  []byte
	subs int // subscriptions seen by WaitSubscribers
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
	return &Publisher{cfg: cfg, sock: sock}, nil
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
	return err
}

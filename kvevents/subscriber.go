package kvevents

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// SubscriberOptions configure a SUB socket as kvtrack opens every one: the
// pool's and kvtrack doctor's.
type SubscriberOptions struct {
	// Bind binds the endpoint (publishers connect to it); otherwise the
	// socket connects to the publisher's endpoint.
	Bind bool
	// TopicFilter is the subscription prefix; "" takes every topic.
	TopicFilter string
	// ReceiveHWM is the receive high-water mark in messages (default
	// DefaultReceiveHWM, vLLM's send HWM).
	ReceiveHWM int
	// MaxMessageBytes, if positive, is ZMQ_MAXMSGSIZE: libzmq drops a
	// connection that sends a larger frame before buffering it.
	MaxMessageBytes int64
}

// newSubSocket creates a SUB socket in zctx (nil: libzmq's default
// context) with o's settings: no linger (closing must not block shutdown),
// IPv6 enabled (so [::1] and bracketed endpoints work), the HWM, the size
// limit and the subscription.
func newSubSocket(zctx *zmq.Context, o SubscriberOptions) (*zmq.Socket, error) {
	var sock *zmq.Socket
	var err error
	if zctx != nil {
		sock, err = zctx.NewSocket(zmq.SUB)
	} else {
		sock, err = zmq.NewSocket(zmq.SUB)
	}
	if err != nil {
		return nil, fmt.Errorf("kvevents: creating SUB socket: %w", err)
	}
	hwm := o.ReceiveHWM
	if hwm <= 0 {
		hwm = DefaultReceiveHWM
	}
	err = errors.Join(sock.SetLinger(0), sock.SetRcvhwm(hwm), sock.SetIpv6(true), sock.SetSubscribe(o.TopicFilter))
	if err == nil && o.MaxMessageBytes > 0 {
		err = sock.SetMaxmsgsize(o.MaxMessageBytes)
	}
	if err != nil {
		sock.Close()
		return nil, fmt.Errorf("kvevents: configuring SUB socket: %w", err)
	}
	return sock, nil
}

// Subscriber is one SUB socket, bound or connected, for a program that
// reads publisher messages itself (kvtrack doctor). It is not safe for
// concurrent use.
type Subscriber struct {
	sock *zmq.Socket
}

// subscriberPoll is how often Recv checks its context.
const subscriberPoll = 100 * time.Millisecond

// NewSubscriber opens a SUB socket on endpoint with o's settings.
func NewSubscriber(endpoint string, o SubscriberOptions) (*Subscriber, error) {
	sock, err := newSubSocket(nil, o)
	if err != nil {
		return nil, err
	}
	if err = sock.SetRcvtimeo(subscriberPoll); err == nil {
		if o.Bind {
			err = sock.Bind(endpoint)
		} else {
			err = sock.Connect(endpoint)
		}
	}
	if err != nil {
		sock.Close()
		verb := "connect to"
		if o.Bind {
			verb = "bind"
		}
		return nil, fmt.Errorf("kvevents: cannot %s %s: %w", verb, endpoint, err)
	}
	return &Subscriber{sock: sock}, nil
}

// Recv returns the frames of the next message, waiting until one arrives
// or ctx ends (then it returns ctx's error).
func (s *Subscriber) Recv(ctx context.Context) ([][]byte, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		frames, err := s.sock.RecvMessageBytes(0)
		if err == nil {
			return frames, nil
		}
		if e := zmq.AsErrno(err); e != zmq.Errno(syscall.EAGAIN) && e != zmq.Errno(syscall.EINTR) {
			return nil, fmt.Errorf("kvevents: receiving: %w", err)
		}
	}
}

// Close closes the socket.
func (s *Subscriber) Close() error { return s.sock.Close() }

package kvevents

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// maxReplay bounds the messages one replay collects (vLLM buffers 10,000
// steps by default).
const maxReplay = 100000

// endSeq is vLLM's replay terminator, (-1).to_bytes(8, "big", signed=True).
var endSeq = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// replayed is one message a replay returned.
type replayed struct {
	seq     uint64
	payload []byte
}

// ErrReplay wraps every replay failure.
var ErrReplay = errors.New("replay failed")

// ReplayOptions bound one replay request.
type ReplayOptions struct {
	// Timeout bounds the wait for each reply (default DefaultReplayTimeout).
	Timeout time.Duration
	// Total, if positive, bounds the whole replay: a huge buffer cannot
	// hold the caller longer.
	Total time.Duration
	// MaxMessageBytes, if positive, is the DEALER's ZMQ_MAXMSGSIZE.
	MaxMessageBytes int64
}

// ReplayReply is one message a replay endpoint returned.
type ReplayReply struct {
	Seq     uint64
	Payload []byte // owned by the callee: fn may retain it
	// HasTopic reports that the reply carried the topic frame, [topic,
	// seq, payload] (vLLM after v0.24), rather than [seq, payload]; Topic
	// is that frame.
	HasTopic bool
	Topic    []byte
}

// Replay asks a publisher's replay endpoint (vLLM's ROUTER, spoken to from
// a DEALER) for every buffered message from sequence number from on, and
// calls fn with each reply, in order, until the end marker, when it
// returns nil. An error from fn ends the replay and is returned; every
// other failure (no reply within Timeout, a malformed reply, ctx ending)
// wraps ErrReplay. The DEALER also sees the ROUTER's empty delimiter
// frame first, which is skipped.
func Replay(ctx context.Context, endpoint string, from uint64, o ReplayOptions, fn func(ReplayReply) error) error {
	if o.Timeout <= 0 {
		o.Timeout = DefaultReplayTimeout
	}
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return fmt.Errorf("%w: creating DEALER socket: %w", ErrReplay, err)
	}
	defer sock.Close()
	poll := min(o.Timeout, 50*time.Millisecond)
	err = errors.Join(sock.SetLinger(0), sock.SetRcvtimeo(poll), sock.SetSndtimeo(o.Timeout), sock.SetRcvhwm(0), sock.SetIpv6(true))
	if err == nil && o.MaxMessageBytes > 0 {
		err = sock.SetMaxmsgsize(o.MaxMessageBytes)
	}
	if err != nil {
		return fmt.Errorf("%w: configuring DEALER socket: %w", ErrReplay, err)
	}
	if err := sock.Connect(endpoint); err != nil {
		return fmt.Errorf("%w: connecting to %s: %w", ErrReplay, endpoint, err)
	}
	req := binary.BigEndian.AppendUint64(nil, from)
	if _, err := sock.SendMessage([]byte{}, req); err != nil {
		return fmt.Errorf("%w: sending request to %s: %w", ErrReplay, endpoint, err)
	}
	n := 0
	deadline := time.Now().Add(o.Timeout)
	var giveUp time.Time
	if o.Total > 0 {
		giveUp = time.Now().Add(o.Total)
	}
	for {
		frames, err := sock.RecvMessageBytes(0)
		if err != nil {
			if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
				return fmt.Errorf("%w: receiving from %s: %w", ErrReplay, endpoint, err)
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("%w: %w", ErrReplay, err)
			}
			if now := time.Now(); now.After(deadline) {
				return fmt.Errorf("%w: no reply from %s within %v (after %d messages)", ErrReplay, endpoint, o.Timeout, n)
			} else if !giveUp.IsZero() && now.After(giveUp) {
				return fmt.Errorf("%w: %s still replaying after %v (%d messages)", ErrReplay, endpoint, o.Total, n)
			}
			continue
		}
		deadline = time.Now().Add(o.Timeout)
		if len(frames) > 0 && len(frames[0]) == 0 {
			frames = frames[1:] // the ROUTER's delimiter
		}
		var r ReplayReply
		var seq []byte
		switch len(frames) {
		case 2:
			seq, r.Payload = frames[0], frames[1]
		case 3:
			r.Topic, seq, r.Payload, r.HasTopic = frames[0], frames[1], frames[2], true
		default:
			return fmt.Errorf("%w: reply from %s has %d frames, want [seq, payload] or [topic, seq, payload]", ErrReplay, endpoint, len(frames))
		}
		if len(seq) != 8 {
			return fmt.Errorf("%w: reply from %s has a %d-byte sequence number, want 8", ErrReplay, endpoint, len(seq))
		}
		if bytes.Equal(seq, endSeq) {
			return nil
		}
		r.Seq = binary.BigEndian.Uint64(seq)
		if err := fn(r); err != nil {
			return err
		}
		n++
		if !giveUp.IsZero() && time.Now().After(giveUp) {
			return fmt.Errorf("%w: %s still replaying after %v (%d messages)", ErrReplay, endpoint, o.Total, n)
		}
	}
}

// fetchReplay collects a replay for the pool, bounded by maxReplay
// messages and lim.MaxReplayBytes.
func fetchReplay(ctx context.Context, endpoint string, from uint64, timeout time.Duration, lim Limits) ([]replayed, error) {
	var out []replayed
	var size int64
	err := Replay(ctx, endpoint, from, ReplayOptions{Timeout: timeout, MaxMessageBytes: lim.MaxMessageBytes}, func(r ReplayReply) error {
		if len(out) >= maxReplay {
			return fmt.Errorf("%w: more than %d messages from %s", ErrReplay, maxReplay, endpoint)
		}
		if size += int64(len(r.Payload)); size > lim.MaxReplayBytes {
			return fmt.Errorf("%w: more than limits.maxReplayBytes (%d) from %s", ErrReplay, lim.MaxReplayBytes, endpoint)
		}
		out = append(out, replayed{seq: r.Seq, payload: r.Payload})
		return nil
	})
	return out, err
}

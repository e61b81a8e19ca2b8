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

// fetchReplay asks a publisher's replay ROUTER for every buffered message
// from seq from on, over a DEALER socket, and collects the replies until the
// end marker. Replies may be [seq, payload] (vLLM <= v0.24) or [topic, seq,
// payload] (later); the DEALER also sees the ROUTER's empty delimiter frame
// first. timeout bounds the wait for each reply; lim bounds each reply's
// size (on the socket) and the bytes collected.
func fetchReplay(ctx context.Context, endpoint string, from uint64, timeout time.Duration, lim Limits) ([]replayed, error) {
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		return nil, fmt.Errorf("%w: creating DEALER socket: %w", ErrReplay, err)
	}
	defer sock.Close()
	poll := min(timeout, 50*time.Millisecond)
	if err := errors.Join(sock.SetLinger(0), sock.SetRcvtimeo(poll), sock.SetSndtimeo(timeout), sock.SetRcvhwm(0), sock.SetMaxmsgsize(lim.MaxMessageBytes), sock.SetIpv6(true)); err != nil {
		return nil, fmt.Errorf("%w: configuring DEALER socket: %w", ErrReplay, err)
	}
	if err := sock.Connect(endpoint); err != nil {
		return nil, fmt.Errorf("%w: connecting to %s: %w", ErrReplay, endpoint, err)
	}
	req := binary.BigEndian.AppendUint64(nil, from)
	if _, err := sock.SendMessage([]byte{}, req); err != nil {
		return nil, fmt.Errorf("%w: sending request to %s: %w", ErrReplay, endpoint, err)
	}
	var out []replayed
	var size int64
	deadline := time.Now().Add(timeout)
	for {
		frames, err := sock.RecvMessageBytes(0)
		if err != nil {
			if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
				return out, fmt.Errorf("%w: receiving from %s: %w", ErrReplay, endpoint, err)
			}
			if err := ctx.Err(); err != nil {
				return out, fmt.Errorf("%w: %w", ErrReplay, err)
			}
			if time.Now().After(deadline) {
				return out, fmt.Errorf("%w: no reply from %s within %v (after %d messages)", ErrReplay, endpoint, timeout, len(out))
			}
			continue
		}
		deadline = time.Now().Add(timeout)
		if len(frames) > 0 && len(frames[0]) == 0 {
			frames = frames[1:] // the ROUTER's delimiter
		}
		var seq, payload []byte
		switch len(frames) {
		case 2:
			seq, payload = frames[0], frames[1]
		case 3:
			seq, payload = frames[1], frames[2]
		default:
			return out, fmt.Errorf("%w: reply from %s has %d frames, want [seq, payload] or [topic, seq, payload]", ErrReplay, endpoint, len(frames))
		}
		if len(seq) != 8 {
			return out, fmt.Errorf("%w: reply from %s has a %d-byte sequence number, want 8", ErrReplay, endpoint, len(seq))
		}
		if bytes.Equal(seq, endSeq) {
			return out, nil
		}
		if len(out) >= maxReplay {
			return out, fmt.Errorf("%w: more than %d messages from %s", ErrReplay, maxReplay, endpoint)
		}
		if size += int64(len(payload)); size > lim.MaxReplayBytes {
			return out, fmt.Errorf("%w: more than limits.maxReplayBytes (%d) from %s", ErrReplay, lim.MaxReplayBytes, endpoint)
		}
		out = append(out, replayed{seq: binary.BigEndian.Uint64(seq), payload: payload})
	}
}

package doctor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// replayResult is what one replay endpoint answered.
type replayResult struct {
	from     uint64
	replies  int  // messages replayed before the end marker (or giving up)
	ended    bool // the end marker arrived
	topicFrm bool // replies carried the topic frame (vLLM ≈v0.25+)
	err      error
}

// checkReplays asks every stream's replay endpoint, concurrently, for the
// messages from the first sequence number the stream showed (0 when it
// showed none), each bounded by timeout.
func (c *collector) checkReplays(ctx context.Context, timeout time.Duration) map[streamKey]replayResult {
	type job struct {
		key  streamKey
		ep   string
		from uint64
	}
	var jobs []job
	c.mu.Lock()
	for _, k := range c.order {
		s := c.byKey[k]
		if s.ReplayEndpoint != "" {
			jobs = append(jobs, job{k, s.ReplayEndpoint, s.FirstSeq})
		}
	}
	c.mu.Unlock()
	out := make(map[streamKey]replayResult, len(jobs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			r := askReplay(ctx, j.ep, j.from, timeout)
			mu.Lock()
			out[j.key] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// endMarker is vLLM's replay terminator, (-1).to_bytes(8, "big", signed=True).
var endMarker = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// askReplay sends one replay request from a DEALER, as the router does on a
// gap, and reads the answer until the end marker, a bad frame, or timeout
// without a reply.
func askReplay(ctx context.Context, ep string, from uint64, timeout time.Duration) replayResult {
	r := replayResult{from: from}
	sock, err := zmq.NewSocket(zmq.DEALER)
	if err != nil {
		r.err = err
		return r
	}
	defer sock.Close()
	if err := errors.Join(sock.SetLinger(0), sock.SetRcvtimeo(50*time.Millisecond), sock.SetSndtimeo(timeout), sock.Connect(ep)); err != nil {
		r.err = err
		return r
	}
	if _, err := sock.SendMessage([]byte{}, binary.BigEndian.AppendUint64(nil, from)); err != nil {
		r.err = fmt.Errorf("sending the request: %w", err)
		return r
	}
	deadline := time.Now().Add(timeout)
	giveUp := time.Now().Add(4 * timeout) // a huge buffer must not hold the doctor
	for time.Now().Before(giveUp) {
		frames, err := sock.RecvMessageBytes(0)
		if err != nil {
			if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
				r.err = err
				return r
			}
			if ctx.Err() != nil {
				r.err = ctx.Err()
				return r
			}
			if time.Now().After(deadline) {
				r.err = fmt.Errorf("no reply within %v", timeout)
				return r
			}
			continue
		}
		deadline = time.Now().Add(timeout)
		if len(frames) > 0 && len(frames[0]) == 0 {
			frames = frames[1:] // the ROUTER's delimiter
		}
		var seq []byte
		switch len(frames) {
		case 2:
			seq = frames[0]
		case 3:
			seq, r.topicFrm = frames[1], true
		default:
			r.err = fmt.Errorf("a reply of %d frames, want [seq, payload] or [topic, seq, payload]", len(frames))
			return r
		}
		if bytes.Equal(seq, endMarker) {
			r.ended = true
			return r
		}
		r.replies++
	}
	return r
}

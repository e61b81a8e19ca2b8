package kvevents

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// pollInterval bounds how long the receiver sleeps in zmq_poll, and so how
// long AddPod, RemovePod and shutdown wait for it.
const pollInterval = 20 * time.Millisecond

// drainBurst is how many messages the receiver takes from one socket before
// polling again, so one busy pod cannot starve the others.
const drainBurst = 512

// maxTopicCache bounds a bind socket's topic -> stream cache.
const maxTopicCache = 4096

// sockCmd asks the receiver to open or close a connect-mode socket.
type sockCmd struct {
	open bool
	s    *stream
}

// msg is one received message on its way to a worker.
type msg struct {
	s       *stream
	seq     uint64
	payload []byte
}

// subscription is one SUB socket, owned by the receiver goroutine.
type subscription struct {
	sock   *zmq.Socket
	rank   int                // bind mode: the DP rank whose port it binds
	s      *stream            // connect mode: the one stream it carries
	topics map[string]*stream // bind mode: topic -> stream cache
}

// receive owns every SUB socket: it binds or connects them, polls them,
// and hands messages to the workers, until ctx ends.
func (p *Pool) receive(ctx context.Context) error {
	poller := zmq.NewPoller()
	subs := make(map[*zmq.Socket]*subscription)
	byStream := make(map[*stream]*subscription)
	defer func() {
		for sock := range subs {
			sock.Close()
		}
	}()

	if p.cfg.Mode == ModeBind {
		for rank := range p.cfg.DataParallelSize {
			ep, err := RankEndpoint(p.cfg.Endpoint, rank)
			if err != nil {
				return err
			}
			sock, err := p.newSub()
			if err != nil {
				return err
			}
			subs[sock] = &subscription{sock: sock, rank: rank, topics: make(map[string]*stream)}
			if err := sock.Bind(ep); err != nil {
				return fmt.Errorf("kvevents: binding %s: %w", ep, err)
			}
			poller.Add(sock, zmq.POLLIN)
			p.log.Info("listening for KV events", "endpoint", ep, "rank", rank, "topicFilter", *p.cfg.TopicFilter)
		}
	}

	for ctx.Err() == nil {
		p.applySockCmds(poller, subs, byStream)
		polled, err := poller.Poll(pollInterval)
		if err != nil {
			if zmq.AsErrno(err) == zmq.Errno(syscall.EINTR) {
				continue
			}
			return fmt.Errorf("kvevents: polling SUB sockets: %w", err)
		}
		for _, pl := range polled {
			if sub := subs[pl.Socket]; sub != nil {
				p.drain(sub)
			}
		}
	}
	return nil
}

func (p *Pool) newSub() (*zmq.Socket, error) {
	sock, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		return nil, fmt.Errorf("kvevents: creating SUB socket: %w", err)
	}
	// Close must not block shutdown on undelivered messages, and the
	// receive HWM should absorb a burst as large as vLLM's send HWM.
	if err := errors.Join(sock.SetLinger(0), sock.SetRcvhwm(p.cfg.ReceiveHWM), sock.SetSubscribe(*p.cfg.TopicFilter)); err != nil {
		sock.Close()
		return nil, fmt.Errorf("kvevents: configuring SUB socket: %w", err)
	}
	return sock, nil
}

// applySockCmds opens and closes the connect-mode sockets AddPod and
// RemovePod asked for.
func (p *Pool) applySockCmds(poller *zmq.Poller, subs map[*zmq.Socket]*subscription, byStream map[*stream]*subscription) {
	p.mu.Lock()
	cmds := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, c := range cmds {
		if !c.open {
			if sub := byStream[c.s]; sub != nil {
				_ = poller.RemoveBySocket(sub.sock)
				sub.sock.Close()
				delete(subs, sub.sock)
				delete(byStream, c.s)
				p.log.V(1).Info("closed SUB socket", "pod", c.s.label, "endpoint", c.s.endpoint)
			}
			continue
		}
		if c.s.removed.Load() {
			continue
		}
		sock, err := p.newSub()
		if err == nil {
			if err = sock.Connect(c.s.endpoint); err != nil {
				sock.Close()
			}
		}
		if err != nil {
			p.log.Error(err, "cannot subscribe to pod", "pod", c.s.label, "endpoint", c.s.endpoint)
			continue
		}
		sub := &subscription{sock: sock, rank: c.s.pod.Rank, s: c.s}
		subs[sock] = sub
		byStream[c.s] = sub
		poller.Add(sock, zmq.POLLIN)
		p.log.V(1).Info("subscribed", "pod", c.s.label, "endpoint", c.s.endpoint)
	}
}

// drain receives what one socket has ready, up to drainBurst messages.
func (p *Pool) drain(sub *subscription) {
	for range drainBurst {
		frames, err := sub.sock.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
				p.log.V(1).Info("receive failed", "error", err.Error())
			}
			return
		}
		p.dispatch(sub, frames)
	}
}

// dispatch routes one message to its stream's worker, dropping it (counted)
// if that worker's queue is full: the gap it leaves is then repaired by
// replay, while blocking here would stall every pod.
func (p *Pool) dispatch(sub *subscription, frames [][]byte) {
	p.c.received.Add(1)
	if len(frames) != 3 || len(frames[1]) != 8 {
		p.c.malformedMsgs.Add(1)
		if p.log.V(1).Enabled() {
			p.log.V(1).Info("malformed message: want 3 frames [topic, seq(8 bytes), payload]", "frames", len(frames))
		}
		return
	}
	s := sub.s
	if s == nil {
		s = sub.topics[string(frames[0])]
		if s == nil || s.removed.Load() {
			addr, ok := podFromTopic(frames[0])
			if !ok {
				p.c.droppedUnknownPod.Add(1)
				if p.log.V(1).Enabled() {
					p.log.V(1).Info("message topic names no pod (want <prefix>@<pod-ip:port>@<model>)", "topic", string(frames[0]))
				}
				return
			}
			s = p.streamFor(kvblock.Pod{Addr: string(addr), Rank: sub.rank})
			if len(sub.topics) >= maxTopicCache {
				clear(sub.topics)
			}
			sub.topics[string(frames[0])] = s
		}
	}
	select {
	case s.w.ch <- msg{s: s, seq: binary.BigEndian.Uint64(frames[1]), payload: frames[2]}:
	default:
		p.c.droppedQueue.Add(1)
	}
}

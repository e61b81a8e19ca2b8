package kvevents

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
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
	topics map[string]*stream // bind mode: topic -> stream cache, for rt
	rt     *routeTable        // bind mode: the routes topics was filled from
	// checkPeer: bind mode with the source checks on; each message's
	// Peer-Address must be a known pod's IP and the IP its topic names.
	checkPeer bool
}

// receive owns every SUB socket: it binds or connects them, reports on
// started whether that worked, then polls them and hands messages to the
// workers, until ctx ends. The sockets live in a libzmq context of the
// pool's own, so that its ZAP handler (which libzmq looks up per context)
// answers for this pool's sockets only.
func (p *Pool) receive(ctx context.Context, started chan<- error) (err error) {
	zctx, err := zmq.NewContext()
	if err != nil {
		err = fmt.Errorf("kvevents: creating a ZMQ context: %w", err)
		started <- err
		return err
	}
	setup := true
	defer func() {
		if setup {
			started <- err
		}
	}()
	poller := zmq.NewPoller()
	subs := make(map[*zmq.Socket]*subscription)
	byStream := make(map[*stream]*subscription)
	var zap *zapHandler
	monitors := make(map[*zmq.Socket]bool)
	defer func() {
		for sock := range subs {
			sock.Close()
		}
		for sock := range monitors {
			sock.Close()
		}
		if zap != nil {
			zap.sock.Close()
		}
		_ = zctx.Term()
	}()
	p.zctx = zctx

	if p.cfg.Mode == ModeBind {
		if !p.cfg.Security.AllowAnySource {
			// The handler must be bound before any SUB socket: without one,
			// libzmq lets every connection in.
			sock, err := zctx.NewSocket(zmq.ROUTER)
			if err == nil {
				zap = &zapHandler{sock: sock}
				if err = sock.SetLinger(0); err == nil {
					err = sock.Bind(zapEndpoint)
				}
			}
			if err != nil {
				return fmt.Errorf("kvevents: starting the ZAP handler: %w", err)
			}
			poller.Add(sock, zmq.POLLIN)
		}
		for rank := range p.cfg.DataParallelSize {
			ep, err := RankEndpoint(p.cfg.Endpoint, rank)
			if err != nil {
				return err
			}
			sock, err := p.newSub()
			if err != nil {
				return err
			}
			sub := &subscription{sock: sock, rank: rank, topics: make(map[string]*stream), checkPeer: !p.cfg.Security.AllowAnySource}
			subs[sock] = sub
			if sub.checkPeer {
				if err := errors.Join(sock.SetZapDomain(zapDomain), sock.SetHandshakeIvl(zapHandshakeIvl)); err != nil {
					return fmt.Errorf("kvevents: setting the ZAP domain: %w", err)
				}
			}
			mon, err := p.monitor(sock, rank)
			if err != nil {
				return err
			}
			monitors[mon] = true
			poller.Add(mon, zmq.POLLIN)
			if err := sock.Bind(ep); err != nil {
				return fmt.Errorf("kvevents: binding %s: %w", ep, err)
			}
			poller.Add(sock, zmq.POLLIN)
			p.log.Info("listening for KV events", "endpoint", ep, "rank", rank, "topicFilter", *p.cfg.TopicFilter,
				"allowAnySource", p.cfg.Security.AllowAnySource)
		}
	}
	p.applySockCmds(poller, subs, byStream)
	setup = false
	started <- nil
	close(p.ready)

	for ctx.Err() == nil {
		p.applySockCmds(poller, subs, byStream)
		if rt := p.routes.Load(); p.cfg.Mode == ModeBind {
			for _, sub := range subs {
				if sub.rt != rt { // pods were added or removed: drop cached topics (and removed streams) now
					clear(sub.topics)
					sub.rt = rt
				}
			}
		}
		if zap != nil {
			zap.admit(p)
		}
		polled, err := poller.Poll(pollInterval)
		p.clock.Store(time.Now().UnixNano())
		if err != nil {
			if zmq.AsErrno(err) == zmq.Errno(syscall.EINTR) {
				continue
			}
			return fmt.Errorf("kvevents: polling SUB sockets: %w", err)
		}
		for _, pl := range polled {
			switch {
			case zap != nil && pl.Socket == zap.sock:
				zap.serve(p)
			case monitors[pl.Socket]:
				p.monitorEvents(pl.Socket)
			default:
				if sub := subs[pl.Socket]; sub != nil {
					p.drain(sub)
				}
			}
		}
	}
	return nil
}

// monitor opens a monitor of a bound socket's disconnections: the only
// trace libzmq leaves of a message over ZMQ_MAXMSGSIZE.
func (p *Pool) monitor(sock *zmq.Socket, rank int) (*zmq.Socket, error) {
	addr := fmt.Sprintf("inproc://kvevents-monitor-%d", rank)
	if err := sock.Monitor(addr, zmq.EVENT_DISCONNECTED); err != nil {
		return nil, fmt.Errorf("kvevents: monitoring the SUB socket: %w", err)
	}
	mon, err := p.zctx.NewSocket(zmq.PAIR)
	if err == nil {
		if err = mon.SetLinger(0); err == nil {
			err = mon.Connect(addr)
		}
		if err != nil {
			mon.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kvevents: monitoring the SUB socket: %w", err)
	}
	return mon, nil
}

func (p *Pool) monitorEvents(mon *zmq.Socket) {
	for range drainBurst {
		ev, _, _, err := mon.RecvEvent(zmq.DONTWAIT)
		if err != nil {
			return
		}
		if ev == zmq.EVENT_DISCONNECTED {
			p.c.disconnects.Add(1)
			if p.log.V(1).Enabled() {
				p.log.V(1).Info("a publisher disconnected (it went away, or sent a message over limits.maxMessageBytes)")
			}
		}
	}
}

func (p *Pool) newSub() (*zmq.Socket, error) {
	return newSubSocket(p.zctx, SubscriberOptions{TopicFilter: *p.cfg.TopicFilter, ReceiveHWM: p.cfg.ReceiveHWM,
		MaxMessageBytes: p.cfg.Limits.MaxMessageBytes})
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
		var frames [][]byte
		var peer string
		var err error
		if sub.checkPeer {
			frames, peer, err = recvWithPeer(sub.sock)
		} else {
			frames, err = sub.sock.RecvMessageBytes(zmq.DONTWAIT)
		}
		if err != nil {
			if zmq.AsErrno(err) != zmq.Errno(syscall.EAGAIN) {
				p.log.V(1).Info("receive failed", "error", err.Error())
			}
			return
		}
		p.dispatch(sub, frames, peer)
	}
}

// samePeer reports whether a message on a cached topic of s comes from
// s's IP, counting it rejected if not.
func (p *Pool) samePeer(s *stream, peer string, topic []byte) bool {
	if ip, ok := peerIP(peer); ok && ip == s.ip {
		return true
	}
	if !p.allowed.allowsPeer(peer) {
		p.rejectMsg(RejectUnknownPeer, msgUnknownPeer, topic, peer)
	} else {
		p.rejectMsg(RejectPeerMismatch, msgPeerMismatch, topic, peer)
	}
	return false
}

// peerAddress is libzmq's message property holding the sender's IP.
const peerAddress = "Peer-Address"

// recvWithPeer receives one message and its sender's IP.
func recvWithPeer(sock *zmq.Socket) (frames [][]byte, peer string, err error) {
	first, md, err := sock.RecvBytesWithMetadata(zmq.DONTWAIT, peerAddress)
	if err != nil {
		return nil, "", err
	}
	frames = append(make([][]byte, 0, 3), first)
	for {
		more, err := sock.GetRcvmore()
		if err != nil || !more {
			return frames, md[peerAddress], err
		}
		f, err := sock.RecvBytes(zmq.DONTWAIT)
		if err != nil {
			return nil, "", err
		}
		frames = append(frames, f)
	}
}

// dispatch routes one message to its stream's worker, dropping it (counted)
// if that worker's queue is full or Limits.MaxQueuedBytes is reached: the
// gap it leaves is then repaired by replay, while blocking here would stall
// every pod. peer is the sender's IP when sub.checkPeer.
func (p *Pool) dispatch(sub *subscription, frames [][]byte, peer string) {
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
		if rt := p.routes.Load(); rt != sub.rt {
			clear(sub.topics) // pods were added or removed
			sub.rt = rt
		}
		s = sub.topics[string(frames[0])]
		if s == nil {
			if s = p.resolve(sub, sub.rt, frames[0], peer); s == nil {
				return
			}
			if len(sub.topics) >= maxTopicCache {
				clear(sub.topics)
			}
			sub.topics[string(frames[0])] = s
		} else if sub.checkPeer && peer != s.ipStr && !p.samePeer(s, peer, frames[0]) {
			return
		}
	}
	m := msg{s: s, seq: binary.BigEndian.Uint64(frames[1]), payload: frames[2]}
	if !p.charge(len(m.payload)) {
		p.c.droppedQueue.Add(1)
		return
	}
	select {
	case s.w.ch <- m:
	default:
		p.release(m)
		p.c.droppedQueue.Add(1)
	}
}

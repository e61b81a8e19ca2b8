package kvevents

// Bind mode: which pod a message is for. Pods come from the pool (AddPod),
// never from the wire: a topic is only a claim, checked against the pods
// added and the sender's IP before any state exists for it.

import (
	"bytes"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// maxTopicBytes bounds the topic of a bind-mode message. llm-d's
// kv@<ip:port>@<model> is far shorter; a longer topic is rejected (reason
// "topic") before it is parsed, cached or logged.
const maxTopicBytes = 512

// routeTable is an immutable snapshot of the bind-mode pods, rebuilt by
// AddPod and RemovePod and read by the receiver without locks. A receiver
// that sees a new table drops its topic cache, so a removed pod's streams
// are unreachable as soon as RemovePod has swapped the table.
type routeTable struct {
	byAddr map[string]*podRoute       // the address as AddPod named it
	byIP   map[netip.Addr][]*podRoute // for topics that name an IP without a port
}

// podRoute is one pod's streams, by rank.
type podRoute struct {
	addr  string
	ip    netip.Addr // invalid for a hostname (Security.AllowAnySource)
	ipStr string     // ip as libzmq prints a Peer-Address
	ranks []*stream  // nil where the rank is not followed
}

// hasPeer reports whether peer (libzmq's Peer-Address) is the pod's IP.
func (r *podRoute) hasPeer(peer string) bool {
	if peer == r.ipStr && peer != "" {
		return true
	}
	ip, ok := peerIP(peer)
	return ok && r.ip.IsValid() && ip == r.ip
}

// stream returns the pod's stream of rank, or nil.
func (r *podRoute) stream(rank int) *stream {
	if rank < len(r.ranks) {
		return r.ranks[rank]
	}
	return nil
}

// rebuildRoutesLocked publishes the bind-mode pods and the IPs that may
// publish. p.mu must be held.
func (p *Pool) rebuildRoutesLocked() {
	rt := &routeTable{byAddr: make(map[string]*podRoute), byIP: make(map[netip.Addr][]*podRoute)}
	ips := make(map[netip.Addr]struct{})
	for pod, s := range p.streams {
		r := rt.byAddr[pod.Addr]
		if r == nil {
			r = &podRoute{addr: pod.Addr, ip: s.ip}
			if s.ip.IsValid() {
				r.ipStr = s.ip.String()
				rt.byIP[s.ip] = append(rt.byIP[s.ip], r)
				if s.added {
					ips[s.ip] = struct{}{}
				}
			}
			rt.byAddr[pod.Addr] = r
		}
		for len(r.ranks) <= pod.Rank {
			r.ranks = append(r.ranks, nil)
		}
		r.ranks[pod.Rank] = s
	}
	p.routes.Store(rt)
	p.allowed.store(ips)
}

// resolve returns the stream a bind-mode message on sub is for, or nil
// after counting (and rate-limited logging of) why it is rejected. It runs
// on the receiver for a topic not in sub's cache; rt is sub's table.
func (p *Pool) resolve(sub *subscription, rt *routeTable, topic []byte, peer string) *stream {
	if len(topic) > maxTopicBytes {
		p.rejectMsg(RejectTopic, "dropped a message whose topic is longer than any pod's (512 bytes)", topic, peer)
		return nil
	}
	if sub.checkPeer && !p.allowed.allowsPeer(peer) {
		p.rejectMsg(RejectUnknownPeer, msgUnknownPeer, topic, peer)
		return nil
	}
	a, ok := podFromTopic(topic)
	if !ok {
		p.c.droppedUnknownPod.Add(1)
		if p.log.V(1).Enabled() {
			p.log.V(1).Info("message topic names no pod (want <prefix>@<pod-ip:port>@<model>)", "topic", string(topic))
		}
		return nil
	}
	r := rt.byAddr[string(a)]
	if r == nil {
		if ip, ok := bareIP(a); ok {
			switch rs := rt.byIP[ip]; len(rs) {
			case 0:
			case 1:
				r = rs[0]
			default:
				p.rejectMsg(RejectAmbiguousPod, "dropped a message whose topic names an IP without a port, and several pods share that IP: "+
					"set each engine's topic to kv@<pod-ip>:<pod-port>@<model> (llm-d: kv@${POD_IP}:${POD_PORT}@${MODEL})", topic, peer)
				return nil
			}
		}
	}
	if r == nil || r.stream(sub.rank) == nil {
		if p.cfg.Security.AllowAnySource {
			addr := string(a)
			if r != nil {
				addr = r.addr
			}
			if s := p.unaddedStream(kvblock.Pod{Addr: addr, Rank: sub.rank}); s != nil {
				return s
			}
			p.rejectMsg(RejectTooManyPods, "dropped a message naming a new pod: security.allowAnySource follows at most 1024 pods", topic, peer)
			return nil
		}
		p.rejectMsg(RejectUnknownPod, "dropped a message whose topic names no pod added to the pool, or a rank not followed "+
			"(the topic's address:port must be the pod's)", topic, peer)
		return nil
	}
	if sub.checkPeer && !r.hasPeer(peer) {
		p.rejectMsg(RejectPeerMismatch, msgPeerMismatch, topic, peer)
		return nil
	}
	return r.stream(sub.rank)
}

// The log lines of rejections that several places make.
const (
	msgUnknownPeer  = "dropped a message from a peer that is not a known pod"
	msgPeerMismatch = "dropped a message whose topic names another pod than its sender"
)

// bareIP parses a topic's pod address that is an IP without a port
// ("10.0.0.7", "::1" or "[::1]").
func bareIP(a []byte) (netip.Addr, bool) {
	if bytes.Count(a, []byte(":")) == 1 || bytes.Contains(a, []byte("]:")) {
		return netip.Addr{}, false // host:port, without parsing (a flood of forged ports must not allocate)
	}
	a = bytes.TrimSuffix(bytes.TrimPrefix(a, []byte("[")), []byte("]"))
	return peerIP(string(a))
}

// rateLog limits a kind of log line to one a second, counting the lines it
// holds back.
type rateLog struct {
	last  atomic.Int64 // unix nanos of the last line
	quiet atomic.Uint64
}

// allow reports whether a line may be logged now, and how many were held
// back since the last one.
func (l *rateLog) allow(now int64) (ok bool, unlogged uint64) {
	last := l.last.Load()
	if now-last < int64(time.Second) || !l.last.CompareAndSwap(last, now) {
		l.quiet.Add(1)
		return false, 0
	}
	return true, l.quiet.Swap(0)
}

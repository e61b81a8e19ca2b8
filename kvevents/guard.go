package kvevents

// Who may publish, and how much: the bind-mode source allowlist (a ZAP
// handler plus a per-message peer check), the per-message limits and the
// per-pod rate of applied events.

import (
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// RejectReason is why a message was refused.
type RejectReason uint8

// The reasons a message or connection is rejected.
const (
	// RejectUnknownPeer: the sender's IP is not the IP of a known pod
	// (bind mode): its handshake is held until its pod is added, or its pod
	// was removed since it connected.
	RejectUnknownPeer RejectReason = iota
	// RejectPeerMismatch: the topic names a pod at another IP than the
	// sender's, or names none that can be checked (bind mode).
	RejectPeerMismatch
	// RejectBlocks: an event carries more than Limits.MaxBlocksPerEvent hashes.
	RejectBlocks
	// RejectTokens: an event carries more than Limits.MaxTokensPerEvent tokens.
	RejectTokens
	// RejectEvents: a batch carries more than Limits.MaxEventsPerBatch events.
	RejectEvents
	// RejectRate: the pod is over Limits.EventsPerSecond.
	RejectRate
	// RejectUnknownPod: the topic names no pod added to the pool, or a rank
	// of it that is not followed (bind mode).
	RejectUnknownPod
	// RejectAmbiguousPod: the topic names an IP without a port, and several
	// added pods share that IP (bind mode).
	RejectAmbiguousPod
	// RejectTopic: the topic is longer than any pod's (bind mode).
	RejectTopic
	// RejectTooManyPods: with Security.AllowAnySource, the topic names a
	// new pod and the bound on pods created from topics is reached.
	RejectTooManyPods

	numRejectReasons
)

// String returns the reason's metric label.
func (r RejectReason) String() string {
	switch r {
	case RejectUnknownPeer:
		return "unknown_peer"
	case RejectPeerMismatch:
		return "peer_mismatch"
	case RejectBlocks:
		return "blocks"
	case RejectTokens:
		return "tokens"
	case RejectEvents:
		return "events"
	case RejectRate:
		return "rate"
	case RejectUnknownPod:
		return "unknown_pod"
	case RejectAmbiguousPod:
		return "ambiguous_pod"
	case RejectTopic:
		return "topic"
	case RejectTooManyPods:
		return "pods"
	}
	return "unknown"
}

// zapDomain is the ZAP domain of the bound SUB sockets. A domain is what
// makes libzmq consult the ZAP handler for NULL-mechanism connections.
const zapDomain = "kvtrack-events"

// zapEndpoint is where libzmq sends ZAP requests, per context (RFC 27).
const zapEndpoint = "inproc://zeromq.zap.01"

// allowlist is the set of pod IPs that may publish in bind mode, rebuilt
// by AddPod and RemovePod and read without locks by the receiver.
type allowlist struct {
	set atomic.Pointer[allowSet]
}

type allowSet struct {
	ips  map[netip.Addr]struct{}
	strs map[string]struct{} // the same IPs as libzmq prints them: most lookups need no parsing
}

func (a *allowlist) store(ips map[netip.Addr]struct{}) {
	set := &allowSet{ips: ips, strs: make(map[string]struct{}, len(ips))}
	for ip := range ips {
		set.strs[ip.String()] = struct{}{}
	}
	a.set.Store(set)
}

func (a *allowlist) allows(ip netip.Addr) bool {
	_, ok := a.set.Load().ips[ip]
	return ok
}

// allowsPeer reports whether a Peer-Address is an allowed IP.
func (a *allowlist) allowsPeer(peer string) bool {
	set := a.set.Load()
	if _, ok := set.strs[peer]; ok {
		return true
	}
	ip, ok := peerIP(peer)
	if !ok {
		return false
	}
	_, ok = set.ips[ip]
	return ok
}

// podIP returns the IP of a pod address "ip:port", "[v6]:port" or a bare
// IP, with IPv4-mapped IPv6 addresses unmapped.
func podIP(addr string) (netip.Addr, bool) {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

// peerIP parses libzmq's Peer-Address or ZAP address (an IP, without port).
func peerIP(addr string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

// zapHandler answers libzmq's ZAP requests (RFC 27) for the bound SUB
// sockets, on a ROUTER so that requests can be answered out of order. A
// connection from a known pod's IP is accepted at once. One from any other
// IP is not refused, because a libzmq peer whose handshake is refused
// never reconnects: an engine that connects before the router learns of
// its pod would be locked out until it restarts. Its request is held
// instead, and accepted as soon as AddPod names its IP; if that does not
// happen within libzmq's handshake interval, libzmq closes the connection
// and the peer reconnects and asks again. Held requests are bounded;
// past the bound the oldest is forgotten, which libzmq times out the same
// way. The receiver goroutine owns it.
type zapHandler struct {
	sock    *zmq.Socket
	pending []zapRequest // oldest first
	set     *allowSet    // the allowlist pending was last checked against
}

type zapRequest struct {
	envelope [][]byte // the ROUTER identity and delimiter, then version and request id
	ip       netip.Addr
	at       time.Time
}

// maxPendingZAP bounds the held handshakes of unknown peers.
const maxPendingZAP = 1024

// zapHandshakeIvl is the bound SUB sockets' ZMQ_HANDSHAKE_IVL: how long a
// held handshake lasts before libzmq closes it and the peer reconnects.
const zapHandshakeIvl = 10 * time.Second

// serve reads one ZAP request and answers or holds it.
func (z *zapHandler) serve(p *Pool) {
	frames, err := z.sock.RecvMessageBytes(zmq.DONTWAIT)
	if err != nil {
		return
	}
	// [routing id, "", version, request_id, domain, address, identity, mechanism, credentials...]
	if len(frames) < 8 || len(frames[1]) != 0 || string(frames[2]) != "1.0" {
		if len(frames) >= 4 {
			z.reply(frames[:4], "500", "malformed ZAP request")
		}
		return
	}
	ip, ok := peerIP(string(frames[5]))
	if ok && p.allowed.allows(ip) {
		z.reply(frames[:4], "200", "OK")
		return
	}
	p.reject(nil, RejectUnknownPeer, "holding a publisher connection: its IP is not a known pod's (accepted if the pod is added)",
		"peer", string(frames[5]))
	if !ok {
		return // no IP: let the handshake time out
	}
	if len(z.pending) >= maxPendingZAP {
		z.pending = slices.Delete(z.pending, 0, 1)
	}
	z.pending = append(z.pending, zapRequest{envelope: frames[:4], ip: ip, at: time.Now()})
}

// admit accepts the held requests of peers the allowlist now names, and
// forgets those libzmq has timed out. It is cheap when nothing changed.
func (z *zapHandler) admit(p *Pool) {
	set := p.allowed.set.Load()
	if len(z.pending) == 0 || set == z.set {
		return
	}
	z.set = set
	expired := time.Now().Add(-zapHandshakeIvl)
	z.pending = slices.DeleteFunc(z.pending, func(r zapRequest) bool {
		if _, ok := set.ips[r.ip]; ok {
			z.reply(r.envelope, "200", "OK")
			return true
		}
		return r.at.Before(expired)
	})
}

// reply sends a ZAP reply on the envelope [routing id, "", version, request_id].
func (z *zapHandler) reply(envelope [][]byte, status, text string) {
	_, _ = z.sock.SendMessage(envelope[0], envelope[1], envelope[2], envelope[3], status, text, "", "")
}

// reject counts a rejection (per pod too when s is not nil) and logs it,
// at most once per reason per second, with how many went unlogged.
func (p *Pool) reject(s *stream, r RejectReason, msg string, kv ...any) {
	p.c.rejected[r].Add(1)
	if s != nil {
		s.rejected[r].Add(1)
	}
	ok, unlogged := p.rejectLog[r].allow(time.Now().UnixNano())
	if !ok {
		return
	}
	for i := 1; i < len(kv); i += 2 {
		if str, ok := kv[i].(string); ok && len(str) > maxLoggedBytes {
			kv[i] = str[:maxLoggedBytes] + "..."
		}
	}
	kv = append(kv, "reason", r.String(), "unlogged", unlogged)
	if s != nil {
		kv = append(kv, "pod", s.label)
	}
	p.log.Info(msg, kv...)
}

// rejectMsg is reject for a message the receiver drops: it builds the log
// line's fields only when the line is logged, so a flood of rejected
// messages costs no allocation.
func (p *Pool) rejectMsg(r RejectReason, msg string, topic []byte, peer string) {
	p.c.rejected[r].Add(1)
	ok, unlogged := p.rejectLog[r].allow(p.clock.Load())
	if !ok {
		return
	}
	if len(topic) > maxLoggedBytes {
		topic = append(topic[:maxLoggedBytes:maxLoggedBytes], "..."...)
	}
	p.log.Info(msg, "peer", peer, "topic", string(topic), "reason", r.String(), "unlogged", unlogged)
}

// maxLoggedBytes bounds a string a rejection logs (a topic, a peer).
const maxLoggedBytes = 128

// bucket is a (pod, rank)'s token bucket of applied events, used by its
// worker under the stream's mutex.
type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last refill; 0 before the first
}

// take removes n tokens if the bucket holds them after refilling at rate
// per second up to burst.
func (b *bucket) take(n int, rate float64, burst int, now int64) bool {
	if b.last == 0 {
		b.tokens = float64(burst)
	} else if now > b.last {
		b.tokens = min(float64(burst), b.tokens+float64(now-b.last)*rate/1e9)
	}
	b.last = now
	if float64(n) > b.tokens {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// overLimits reports the first limit b exceeds.
func (l *Limits) overLimits(b *Batch) (RejectReason, bool) {
	if len(b.Events) > l.MaxEventsPerBatch {
		return RejectEvents, true
	}
	for i := range b.Events {
		ev := &b.Events[i]
		if len(ev.BlockHashes) > l.MaxBlocksPerEvent {
			return RejectBlocks, true
		}
		if len(ev.TokenIDs) > l.MaxTokensPerEvent {
			return RejectTokens, true
		}
	}
	return 0, false
}

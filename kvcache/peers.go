package kvcache

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Replicas of a replicated EPP that each keep their own memory index share
// their routing decisions over plain TCP (no libzmq: package kvcache builds
// without cgo). The protocol is one way per connection:
//
//	acceptor -> dialer: hello = "KVTP" | version (1 byte) | instance id (8 bytes)
//	dialer -> acceptor: frames, each u32 length (big-endian) then
//	                    flags (1 byte) | pod length (1 byte) | pod | keys (8 bytes each, big-endian)
//
// The hello lets a replica that resolved its own address recognise itself
// and stop dialing it. flags bit 0 is partialTail (see speculator); the
// other bits must be zero. A frame that breaks these rules ends its
// connection: its stream can no longer be trusted to be framed.

const (
	peerMagic   = "KVTP"
	peerVersion = 1
	helloLen    = len(peerMagic) + 1 + 8

	flagPartialTail = 1 << 0

	// maxPeerKeys bounds one decision's keys: a 1M-token prompt at block
	// size 16. A frame is at most maxPeerFrame bytes.
	maxPeerKeys  = 1 << 16
	maxPeerFrame = 2 + 255 + 8*maxPeerKeys

	peerDialTimeout = 2 * time.Second
	peerMaxBackoff  = 5 * time.Second
	// defaultHelloTimeout bounds the wait for a peer's hello.
	defaultHelloTimeout = 5 * time.Second
	// peerWriteTimeout bounds one write to a peer that stopped reading.
	peerWriteTimeout = 5 * time.Second
)

// validate checks speculative.peers (after defaults), reporting through bad.
func (p PeersConfig) validate(c Config, bad func(field, format string, args ...any)) {
	if p.Listen == "" {
		if len(p.Endpoints) > 0 {
			bad("speculative.peers.listen", "empty while endpoints are set (valid: this replica's host:port to accept peers on, such as :5558)")
		}
		return
	}
	if !c.Speculative.Enabled {
		bad("speculative.peers", "set while speculative.enabled is false (valid: enable speculative entries, or remove peers)")
	}
	if c.Index.Backend == IndexRedis {
		bad("speculative.peers", "set with index.backend redis, whose replicas already share speculative entries (valid: peers only with the memory backend)")
	}
	if err := validHostPort(p.Listen, true); err != nil {
		bad("speculative.peers.listen", "%v (valid: host:port to accept peers on, such as :5558 or 0.0.0.0:5558)", err)
	}
	if len(p.Endpoints) == 0 {
		bad("speculative.peers.endpoints", "empty (valid: the replicas' host:port, or a headless Service name:port that resolves to every replica)")
	}
	for i, ep := range p.Endpoints {
		if err := validHostPort(ep, false); err != nil {
			bad("speculative.peers.endpoints["+strconv.Itoa(i)+"]", "%v (valid: host:port)", err)
		}
	}
	if p.ResolveInterval <= 0 {
		bad("speculative.peers.resolveInterval", "%v out of range (valid: above 0, such as 10s)", time.Duration(p.ResolveInterval))
	}
	if p.QueueSize <= 0 {
		bad("speculative.peers.queueSize", "%d out of range (valid: above 0)", p.QueueSize)
	}
}

// validHostPort checks host:port; emptyHost allows ":5558" (every address).
func validHostPort(s string, emptyHost bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if host == "" && !emptyHost {
		return fmt.Errorf("%q has no host", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not 1-65535", s, port)
	}
	return nil
}

// peerDecision is one routing decision as a frame says it.
type peerDecision struct {
	pod         string
	keys        []kvblock.Key
	partialTail bool
}

// appendPeerFrame appends the frame of a decision, length prefix included.
func appendPeerFrame(dst []byte, pod string, keys []kvblock.Key, partialTail bool) []byte {
	n := 2 + len(pod) + 8*len(keys)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	var flags byte
	if partialTail {
		flags |= flagPartialTail
	}
	dst = append(dst, flags, byte(len(pod)))
	dst = append(dst, pod...)
	for _, k := range keys {
		dst = binary.BigEndian.AppendUint64(dst, uint64(k))
	}
	return dst
}

// errPeerFrame is every malformed frame's error.
var errPeerFrame = errors.New("malformed peer frame")

// parsePeerFrame reads a frame's payload (after its length prefix), into
// d, reusing d.keys.
func parsePeerFrame(payload []byte, d *peerDecision) error {
	if len(payload) < 2 {
		return fmt.Errorf("%w: %d bytes", errPeerFrame, len(payload))
	}
	flags, podLen := payload[0], int(payload[1])
	if flags&^flagPartialTail != 0 {
		return fmt.Errorf("%w: unknown flags %#x", errPeerFrame, flags)
	}
	rest := payload[2:]
	if podLen == 0 || podLen > len(rest) {
		return fmt.Errorf("%w: pod length %d of %d bytes", errPeerFrame, podLen, len(rest))
	}
	pod, rest := rest[:podLen], rest[podLen:]
	if len(rest) == 0 || len(rest)%8 != 0 || len(rest)/8 > maxPeerKeys {
		return fmt.Errorf("%w: %d key bytes (valid: 1 to %d keys of 8 bytes)", errPeerFrame, len(rest), maxPeerKeys)
	}
	d.pod = string(pod)
	d.partialTail = flags&flagPartialTail != 0
	d.keys = d.keys[:0]
	for i := 0; i < len(rest); i += 8 {
		d.keys = append(d.keys, kvblock.Key(binary.BigEndian.Uint64(rest[i:])))
	}
	return nil
}

// peerStats are the peer link's counters.
type peerStats struct {
	sent, received, dropped, refused, overLimit, malformed, unknownPod, acceptErrors atomic.Uint64
	connected, sending                                                               atomic.Int64 // inbound, outbound connections
}

var (
	peerSentDesc      = prometheus.NewDesc("kvtrack_speculative_peer_sent_total", "Routing decisions sent to peer replicas (one per peer).", nil, nil)
	peerReceivedDesc  = prometheus.NewDesc("kvtrack_speculative_peer_received_total", "Peer replicas' routing decisions recorded as speculative entries.", nil, nil)
	peerDroppedDesc   = prometheus.NewDesc("kvtrack_speculative_peer_dropped_total", "Routing decisions not sent to a peer: its queue was full or it was unreachable.", nil, nil)
	peerRejectedDesc  = prometheus.NewDesc("kvtrack_speculative_peer_rejected_total", "Peer connections and decisions rejected, by reason: source (an address endpoints do not resolve to), limit (more connections from one address than a replica needs), malformed (the connection is closed), unknown_pod (a pod this replica does not follow).", []string{"reason"}, nil)
	peerAcceptDesc    = prometheus.NewDesc("kvtrack_speculative_peer_accept_errors_total", "Failures to accept a peer's connection (such as descriptors exhausted); the listener retries with backoff.", nil, nil)
	peerConnectedDesc = prometheus.NewDesc("kvtrack_speculative_peers_connected", "Live connections with peer replicas, by direction: in (a peer sends to this replica), out (this replica sends to a peer).", []string{"direction"}, nil)
)

// Describe implements prometheus.Collector.
func (s *peerStats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{peerSentDesc, peerReceivedDesc, peerDroppedDesc, peerRejectedDesc, peerAcceptDesc, peerConnectedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *peerStats) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(peerSentDesc, s.sent.Load())
	counter(peerReceivedDesc, s.received.Load())
	counter(peerDroppedDesc, s.dropped.Load())
	counter(peerRejectedDesc, s.refused.Load(), "source")
	counter(peerRejectedDesc, s.overLimit.Load(), "limit")
	counter(peerRejectedDesc, s.malformed.Load(), "malformed")
	counter(peerRejectedDesc, s.unknownPod.Load(), "unknown_pod")
	counter(peerAcceptDesc, s.acceptErrors.Load())
	ch <- prometheus.MustNewConstMetric(peerConnectedDesc, prometheus.GaugeValue, float64(s.connected.Load()), "in")
	ch <- prometheus.MustNewConstMetric(peerConnectedDesc, prometheus.GaugeValue, float64(s.sending.Load()), "out")
}

// peerLink is a replica's side of speculative.peers: the listener its peers
// send to, one sender per peer address, and the resolver that keeps the
// senders and the allowed sources in step with Endpoints.
type peerLink struct {
	cfg PeersConfig
	ttl time.Duration // speculative.ttl: a decision older than it is worth nothing
	// helloTimeout bounds the wait for a dialed peer's hello (a test
	// lengthens it to show that Close does not wait it out).
	helloTimeout time.Duration
	// wrapListener, when set, wraps the bound listener (tests inject
	// Accept failures with it).
	wrapListener func(net.Listener) net.Listener
	// lookupHost resolves an endpoint's host (net.DefaultResolver's;
	// tests fake DNS answers and failures with it).
	lookupHost func(ctx context.Context, host string) ([]string, error)
	id         [8]byte
	log        logr.Logger
	apply      func(ctx context.Context, d *peerDecision) bool // false: pod unknown
	stats      peerStats

	ln net.Listener

	senders   sync.WaitGroup // every peerSender.run and its connection's reader
	resolveMu sync.Mutex     // one resolve at a time; guards found
	// found holds each endpoint's addresses (ip:port) as its last
	// successful lookup gave them: an endpoint whose lookup fails keeps
	// its own, and only its own.
	found map[string][]string

	mu      sync.Mutex
	peers   map[string]*peerSender // by resolved ip:port
	allowed map[string]bool        // resolved IPs
	self    map[string]bool        // ip:port found to be this replica
	// alias holds ip:port found to reach a peer another address already
	// reaches (a dual-stack name's A and AAAA records), until the next
	// resolve; byID the sender connected to each peer.
	alias       map[string]bool
	byID        map[[8]byte]*peerSender
	conns       map[net.Conn]struct{}
	perSource   map[string]int // inbound connections by IP
	lastResolve time.Time
	closed      bool
}

const (
	// maxConnsPerSource bounds the inbound connections from one IP: a
	// replica needs one, and a few while it restarts.
	maxConnsPerSource = 4
	// resolveOnDemandEvery bounds the resolves a connection from an
	// unknown address triggers (a replica that has just started).
	resolveOnDemandEvery = time.Second
	// readStep is how much of a frame is buffered ahead of its bytes
	// arriving: a frame's announced length reserves nothing.
	readStep = 64 << 10
)

func newPeerLink(cfg PeersConfig, ttl time.Duration, log logr.Logger, apply func(context.Context, *peerDecision) bool) (*peerLink, error) {
	l := &peerLink{cfg: cfg, ttl: ttl, helloTimeout: defaultHelloTimeout, log: log, apply: apply,
		peers: map[string]*peerSender{}, allowed: map[string]bool{}, self: map[string]bool{}, alias: map[string]bool{},
		byID: map[[8]byte]*peerSender{}, conns: map[net.Conn]struct{}{}, perSource: map[string]int{}}
	if _, err := rand.Read(l.id[:]); err != nil {
		return nil, fmt.Errorf("peers: instance id: %w", err)
	}
	return l, nil
}

// start binds the listener, returning what prevents it, then runs the
// accept loop and the resolver on bg until ctx ends. The first resolve
// runs in the background: a name that is slow to resolve does not hold up
// Start, and a peer connecting before it triggers one itself.
func (l *peerLink) start(ctx context.Context, bg *sync.WaitGroup) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", l.cfg.Listen)
	if err != nil {
		return fmt.Errorf("speculative.peers.listen: %w", err)
	}
	if l.wrapListener != nil {
		ln = l.wrapListener(ln)
	}
	l.ln = ln
	bg.Go(func() { l.accept(ctx, bg) })
	bg.Go(func() {
		l.resolve(ctx)
		t := time.NewTicker(time.Duration(l.cfg.ResolveInterval))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				l.shutdown()
				l.senders.Wait()
				return
			case <-t.C:
				l.resolve(ctx)
			}
		}
	})
	return nil
}

// shutdown closes the listener, every connection and every sender.
func (l *peerLink) shutdown() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.ln != nil { // nil when start never bound it
		_ = l.ln.Close()
	}
	for c := range l.conns {
		_ = c.Close()
	}
	for a, s := range l.peers {
		s.stop()
		delete(l.peers, a)
	}
}

// resolve looks Endpoints up and starts a sender for each new address,
// stops those of addresses gone, and updates the sources allowed in. An
// endpoint whose lookup fails keeps the addresses its last successful
// lookup found, so a DNS blip drops no live peer, while the other
// endpoints' answers still take effect.
func (l *peerLink) resolve(ctx context.Context) {
	l.resolveMu.Lock()
	defer l.resolveMu.Unlock()
	if l.found == nil {
		l.found = map[string][]string{}
	}
	lookup := l.lookupHost
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	addrs := map[string]bool{}
	ips := map[string]bool{}
	for _, ep := range l.cfg.Endpoints {
		host, port, _ := net.SplitHostPort(ep) // validated
		lctx, cancel := context.WithTimeout(ctx, peerDialTimeout)
		got, err := lookup(lctx, host)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				l.log.Info("speculative peers: cannot resolve; keeping its last addresses", "endpoint", ep, "kept", len(l.found[ep]), "err", err)
			}
		} else {
			l.found[ep] = l.found[ep][:0]
			for _, ip := range got {
				l.found[ep] = append(l.found[ep], net.JoinHostPort(ip, port))
			}
		}
		for _, a := range l.found[ep] {
			addrs[a] = true
			ip, _, _ := net.SplitHostPort(a)
			ips[ip] = true
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastResolve = time.Now()
	if l.closed {
		return
	}
	l.allowed = ips
	clear(l.alias) // try them again: the peer they duplicated may be gone
	for a, s := range l.peers {
		if !addrs[a] {
			s.stop()
			delete(l.peers, a)
		}
	}
	for a := range addrs {
		if _, ok := l.peers[a]; ok || l.self[a] {
			continue
		}
		s := &peerSender{link: l, addr: a, queue: make(chan peerFrame, l.cfg.QueueSize), quit: make(chan struct{})}
		l.peers[a] = s
		l.senders.Go(func() { s.run(ctx) })
	}
}

// broadcast queues a decision for every peer; a full queue drops it.
func (l *peerLink) broadcast(pod string, keys []kvblock.Key, partialTail bool) {
	if len(pod) == 0 || len(pod) > 255 || len(keys) == 0 || len(keys) > maxPeerKeys {
		return // not expressible; the decision stays this replica's own
	}
	f := peerFrame{b: appendPeerFrame(make([]byte, 0, 4+2+len(pod)+8*len(keys)), pod, keys, partialTail), at: time.Now()}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.peers {
		select {
		case s.queue <- f:
		default:
			l.stats.dropped.Add(1)
		}
	}
}

// accept admits peers from allowed sources. An Accept error other than
// the listener's closing (descriptors exhausted, say) is waited out, not
// the end of listening.
func (l *peerLink) accept(ctx context.Context, bg *sync.WaitGroup) {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			l.stats.acceptErrors.Add(1)
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Error(err, "speculative peers: accept; retrying", "in", delay)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		ip, ok := l.admit(ctx, c)
		if !ok {
			_ = c.Close()
			continue
		}
		bg.Go(func() {
			l.receive(ctx, c)
			l.mu.Lock()
			delete(l.conns, c)
			if l.perSource[ip]--; l.perSource[ip] <= 0 {
				delete(l.perSource, ip)
			}
			l.mu.Unlock()
			_ = c.Close()
		})
	}
}

// admit reports whether c may send decisions, and tracks it for shutdown.
// A source not allowed is checked again after resolving the endpoints
// (at most once a second): a replica that has just started is refused
// only if the names do not lead to it.
func (l *peerLink) admit(ctx context.Context, c net.Conn) (string, bool) {
	var ip string
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip = ta.IP.String()
	}
	if !l.cfg.AllowAnySource && !l.isAllowed(ip) {
		l.mu.Lock()
		stale := time.Since(l.lastResolve) >= resolveOnDemandEvery
		l.mu.Unlock()
		if stale {
			l.resolve(ctx)
		}
		if !l.isAllowed(ip) {
			l.stats.refused.Add(1)
			return "", false
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return "", false
	}
	if l.perSource[ip] >= maxConnsPerSource {
		l.stats.overLimit.Add(1)
		return "", false
	}
	l.perSource[ip]++
	l.conns[c] = struct{}{}
	return ip, true
}

func (l *peerLink) isAllowed(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ip != "" && l.allowed[ip]
}

// receive greets a peer and applies its frames until it hangs up or sends
// a malformed one.
func (l *peerLink) receive(ctx context.Context, c net.Conn) {
	var hello [helloLen]byte
	copy(hello[:], peerMagic)
	hello[len(peerMagic)] = peerVersion
	copy(hello[len(peerMagic)+1:], l.id[:])
	if _, err := c.Write(hello[:]); err != nil {
		return
	}
	l.stats.connected.Add(1)
	defer l.stats.connected.Add(-1)
	r := bufio.NewReaderSize(c, 4<<10)
	var (
		head [4]byte
		buf  []byte
		d    peerDecision
	)
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(head[:]))
		if n > maxPeerFrame {
			l.stats.malformed.Add(1)
			l.log.Info("speculative peers: frame too long, closing", "peer", c.RemoteAddr().String(), "bytes", n)
			return
		}
		// Grow the buffer as the bytes arrive, so that a length alone
		// holds no memory.
		buf = buf[:0]
		for len(buf) < n {
			step := min(n-len(buf), readStep)
			buf = slices.Grow(buf, step)
			got, err := io.ReadFull(r, buf[len(buf):len(buf)+step])
			buf = buf[:len(buf)+got]
			if err != nil {
				return
			}
		}
		if err := parsePeerFrame(buf, &d); err != nil {
			l.stats.malformed.Add(1)
			l.log.Info("speculative peers: closing", "peer", c.RemoteAddr().String(), "err", err)
			return
		}
		if !l.apply(ctx, &d) {
			l.stats.unknownPod.Add(1)
			continue
		}
		l.stats.received.Add(1)
	}
}

// claim makes s the sender to peer id, or reports false when another
// address already reaches it: s's address is then an alias until the
// next resolve.
func (l *peerLink) claim(id [8]byte, s *peerSender) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if other, ok := l.byID[id]; ok && other != s {
		l.alias[s.addr] = true
		if l.peers[s.addr] == s {
			delete(l.peers, s.addr)
		}
		return false
	}
	l.byID[id] = s
	return true
}

func (l *peerLink) unclaim(id [8]byte, s *peerSender) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byID[id] == s {
		delete(l.byID, id)
	}
}

// peerFrame is a decision's frame and when it was queued.
type peerFrame struct {
	b  []byte
	at time.Time
}

// peerSender writes the decisions queued for one peer address, dialing it
// again with backoff whenever the connection fails. While it is not
// connected, decisions are dropped: they are worth something only for the
// next seconds.
type peerSender struct {
	link  *peerLink
	addr  string
	queue chan peerFrame
	quit  chan struct{}
	once  sync.Once

	mu   sync.Mutex
	conn net.Conn // the connection, from its dial on, closed by stop
}

func (s *peerSender) stop() {
	s.once.Do(func() {
		close(s.quit)
		s.mu.Lock()
		if s.conn != nil {
			_ = s.conn.Close()
		}
		s.mu.Unlock()
	})
}

// setConn records c as the connection, or reports false (and closes it)
// once the sender has stopped.
func (s *peerSender) setConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.quit:
		if c != nil {
			_ = c.Close()
		}
		return false
	default:
	}
	s.conn = c
	return true
}

func (s *peerSender) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	reachable := true
	for {
		c, id, err := s.dial(ctx)
		switch {
		case err != nil:
			select {
			case <-s.quit:
				return
			default:
			}
			if reachable && ctx.Err() == nil {
				s.link.log.Info("speculative peers: cannot reach a peer; its decisions are dropped until it answers", "peer", s.addr, "err", err)
				reachable = false
			}
			s.drain()
		case id == s.link.id:
			s.link.mu.Lock()
			s.link.self[s.addr] = true
			if s.link.peers[s.addr] == s {
				delete(s.link.peers, s.addr)
			}
			s.link.mu.Unlock()
			s.discard()
			s.close(c)
			return
		case !s.link.claim(id, s):
			s.discard() // the other address's sender has the same decisions
			s.close(c)
			return
		default:
			if !reachable {
				s.link.log.Info("speculative peers: peer reachable again", "peer", s.addr)
			}
			reachable, backoff = true, 100*time.Millisecond
			s.link.stats.sending.Add(1)
			s.send(c)
			s.link.stats.sending.Add(-1)
			s.link.unclaim(id, s)
			s.close(c)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.quit:
			return
		case <-time.After(backoff):
			backoff = min(2*backoff, peerMaxBackoff)
		}
	}
}

func (s *peerSender) close(c net.Conn) {
	s.setConn(nil)
	_ = c.Close()
}

// dial connects and reads the peer's hello, returning its instance id. The
// connection is the sender's from the start, so that stop interrupts a
// peer that never greets.
func (s *peerSender) dial(ctx context.Context) (net.Conn, [8]byte, error) {
	var id [8]byte
	d := net.Dialer{Timeout: peerDialTimeout}
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, id, err
	}
	if !s.setConn(c) {
		return nil, id, net.ErrClosed
	}
	var hello [helloLen]byte
	_ = c.SetReadDeadline(time.Now().Add(s.link.helloTimeout))
	if _, err = io.ReadFull(c, hello[:]); err != nil || string(hello[:len(peerMagic)]) != peerMagic || hello[len(peerMagic)] != peerVersion {
		s.close(c)
		if err == nil {
			err = fmt.Errorf("peer %s: not a kvtrack peer of protocol version %d", s.addr, peerVersion)
		}
		return nil, id, err
	}
	_ = c.SetReadDeadline(time.Time{})
	copy(id[:], hello[len(peerMagic)+1:])
	return c, id, nil
}

// send writes queued frames to c until it fails, the peer hangs up or the
// sender stops. A frame counts as sent once flushed to the socket; frames
// written but not flushed when the connection fails count as dropped, as
// do frames older than the TTL (their requests' entries would be over).
func (s *peerSender) send(c net.Conn) {
	// The acceptor writes nothing after its hello: a read that ends means
	// it hung up, which ends the connection now rather than at the next
	// write.
	gone := make(chan struct{})
	s.link.senders.Go(func() {
		_, _ = io.Copy(io.Discard, c)
		close(gone)
	})
	stats := &s.link.stats
	w := bufio.NewWriterSize(c, 64<<10)
	buffered := uint64(0)
	defer func() { stats.dropped.Add(buffered) }()
	for {
		var f peerFrame
		select {
		case f = <-s.queue:
		case <-gone:
			return
		case <-s.quit:
			return
		}
		if time.Since(f.at) >= s.link.ttl {
			stats.dropped.Add(1)
			continue
		}
		_ = c.SetWriteDeadline(time.Now().Add(peerWriteTimeout))
		buffered++
		if _, err := w.Write(f.b); err != nil {
			return
		}
		// Flush once nothing more is waiting: a burst goes out in one write.
		if len(s.queue) == 0 {
			if err := w.Flush(); err != nil {
				return
			}
			stats.sent.Add(buffered)
			buffered = 0
		}
	}
}

// drain drops what is queued, counting it.
func (s *peerSender) drain() {
	for {
		select {
		case <-s.queue:
			s.link.stats.dropped.Add(1)
		default:
			return
		}
	}
}

// discard empties the queue of decisions that are not lost: this sender's
// address is this replica, or a peer another sender reaches.
func (s *peerSender) discard() {
	for {
		select {
		case <-s.queue:
		default:
			return
		}
	}
}

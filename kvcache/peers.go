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

	peerDialTimeout  = 2 * time.Second
	peerHelloTimeout = 5 * time.Second
	peerMaxBackoff   = 5 * time.Second
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
	sent, received, dropped, refused, malformed, unknownPod atomic.Uint64
	connected, sending                                      atomic.Int64 // inbound, outbound connections
}

var (
	peerSentDesc      = prometheus.NewDesc("kvtrack_speculative_peer_sent_total", "Routing decisions sent to peer replicas (one per peer).", nil, nil)
	peerReceivedDesc  = prometheus.NewDesc("kvtrack_speculative_peer_received_total", "Peer replicas' routing decisions recorded as speculative entries.", nil, nil)
	peerDroppedDesc   = prometheus.NewDesc("kvtrack_speculative_peer_dropped_total", "Routing decisions not sent to a peer: its queue was full or it was unreachable.", nil, nil)
	peerRejectedDesc  = prometheus.NewDesc("kvtrack_speculative_peer_rejected_total", "Peer connections and decisions rejected, by reason: source (an address endpoints do not resolve to), malformed (the connection is closed), unknown_pod (a pod this replica does not follow).", []string{"reason"}, nil)
	peerConnectedDesc = prometheus.NewDesc("kvtrack_speculative_peers_connected", "Live connections with peer replicas, by direction: in (a peer sends to this replica), out (this replica sends to a peer).", []string{"direction"}, nil)
)

// Describe implements prometheus.Collector.
func (s *peerStats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{peerSentDesc, peerReceivedDesc, peerDroppedDesc, peerRejectedDesc, peerConnectedDesc} {
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
	counter(peerRejectedDesc, s.malformed.Load(), "malformed")
	counter(peerRejectedDesc, s.unknownPod.Load(), "unknown_pod")
	ch <- prometheus.MustNewConstMetric(peerConnectedDesc, prometheus.GaugeValue, float64(s.connected.Load()), "in")
	ch <- prometheus.MustNewConstMetric(peerConnectedDesc, prometheus.GaugeValue, float64(s.sending.Load()), "out")
}

// peerLink is a replica's side of speculative.peers: the listener its peers
// send to, one sender per peer address, and the resolver that keeps the
// senders and the allowed sources in step with Endpoints.
type peerLink struct {
	cfg   PeersConfig
	id    [8]byte
	log   logr.Logger
	apply func(ctx context.Context, d *peerDecision) bool // false: pod unknown
	stats peerStats

	ln net.Listener

	senders sync.WaitGroup // every peerSender.run

	mu      sync.Mutex
	peers   map[string]*peerSender // by resolved ip:port
	allowed map[string]bool        // resolved IPs
	self    map[string]bool        // ip:port found to be this replica
	conns   map[net.Conn]struct{}
	closed  bool
}

func newPeerLink(cfg PeersConfig, log logr.Logger, apply func(context.Context, *peerDecision) bool) (*peerLink, error) {
	l := &peerLink{cfg: cfg, log: log, apply: apply,
		peers: map[string]*peerSender{}, allowed: map[string]bool{}, self: map[string]bool{}, conns: map[net.Conn]struct{}{}}
	if _, err := rand.Read(l.id[:]); err != nil {
		return nil, fmt.Errorf("peers: instance id: %w", err)
	}
	return l, nil
}

// start binds the listener, returning what prevents it, then runs the
// accept loop and the resolver on bg until ctx ends.
func (l *peerLink) start(ctx context.Context, bg *sync.WaitGroup) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", l.cfg.Listen)
	if err != nil {
		return fmt.Errorf("speculative.peers.listen: %w", err)
	}
	l.ln = ln
	l.resolve(ctx) // before the first accept, so that peers are allowed
	bg.Go(func() { l.accept(ctx, bg) })
	bg.Go(func() {
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
	_ = l.ln.Close()
	for c := range l.conns {
		_ = c.Close()
	}
	for a, s := range l.peers {
		s.stop()
		delete(l.peers, a)
	}
}

// resolve looks Endpoints up and starts a sender for each new address,
// stops those of addresses gone, and updates the sources allowed in. A
// lookup that fails keeps what the last one found.
func (l *peerLink) resolve(ctx context.Context) {
	addrs := map[string]bool{}
	ips := map[string]bool{}
	failed := false
	for _, ep := range l.cfg.Endpoints {
		host, port, _ := net.SplitHostPort(ep) // validated
		lctx, cancel := context.WithTimeout(ctx, peerDialTimeout)
		found, err := net.DefaultResolver.LookupHost(lctx, host)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				l.log.Info("speculative peers: cannot resolve", "endpoint", ep, "err", err)
			}
			failed = true
			continue
		}
		for _, ip := range found {
			addrs[net.JoinHostPort(ip, port)] = true
			ips[ip] = true
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if failed { // keep what is known rather than drop live peers on a DNS blip
		for a := range l.peers {
			addrs[a] = true
		}
		for ip := range l.allowed {
			ips[ip] = true
		}
	}
	l.allowed = ips
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
		s := &peerSender{link: l, addr: a, queue: make(chan []byte, l.cfg.QueueSize), quit: make(chan struct{})}
		l.peers[a] = s
		l.senders.Go(func() { s.run(ctx) })
	}
}

// broadcast queues a decision for every peer; a full queue drops it.
func (l *peerLink) broadcast(pod string, keys []kvblock.Key, partialTail bool) {
	if len(pod) == 0 || len(pod) > 255 || len(keys) == 0 || len(keys) > maxPeerKeys {
		return // not expressible; the decision stays this replica's own
	}
	frame := appendPeerFrame(make([]byte, 0, 4+2+len(pod)+8*len(keys)), pod, keys, partialTail)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.peers {
		select {
		case s.queue <- frame:
		default:
			l.stats.dropped.Add(1)
		}
	}
}

// accept admits peers from allowed sources.
func (l *peerLink) accept(ctx context.Context, bg *sync.WaitGroup) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				l.log.Error(err, "speculative peers: accept")
			}
			return
		}
		if !l.admit(c) {
			l.stats.refused.Add(1)
			_ = c.Close()
			continue
		}
		bg.Go(func() {
			l.receive(ctx, c)
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
			_ = c.Close()
		})
	}
}

// admit reports whether c may send decisions, and tracks it for shutdown.
func (l *peerLink) admit(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	if !l.cfg.AllowAnySource {
		ta, ok := c.RemoteAddr().(*net.TCPAddr)
		if !ok || !l.allowed[ta.IP.String()] {
			return false
		}
	}
	l.conns[c] = struct{}{}
	return true
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
	r := bufio.NewReaderSize(c, 64<<10)
	var (
		head [4]byte
		buf  []byte
		d    peerDecision
	)
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(head[:])
		if n > maxPeerFrame {
			l.stats.malformed.Add(1)
			l.log.Info("speculative peers: frame too long, closing", "peer", c.RemoteAddr().String(), "bytes", n)
			return
		}
		buf = slices.Grow(buf[:0], int(n))[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return
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

// peerSender writes the decisions queued for one peer address, dialing it
// again with backoff whenever the connection fails. While it is not
// connected, decisions are dropped: they are worth something only for the
// next seconds.
type peerSender struct {
	link  *peerLink
	addr  string
	queue chan []byte
	quit  chan struct{}
	once  sync.Once

	mu   sync.Mutex
	conn net.Conn // the live connection, closed by stop to end a blocked write
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

// setConn records c as the live connection, or reports false (and closes
// it) once the sender has stopped.
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
	for {
		c, self, err := s.dial(ctx)
		switch {
		case self:
			s.link.mu.Lock()
			s.link.self[s.addr] = true
			delete(s.link.peers, s.addr)
			s.link.mu.Unlock()
			for len(s.queue) > 0 { // decisions for itself: not lost
				<-s.queue
			}
			return
		case err == nil:
			backoff = 100 * time.Millisecond
			if !s.setConn(c) {
				return
			}
			s.link.stats.sending.Add(1)
			s.send(c)
			s.link.stats.sending.Add(-1)
			s.setConn(nil)
			_ = c.Close()
		default:
			s.drain()
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

// dial connects and reads the peer's hello; self reports that the address
// is this replica's own listener.
func (s *peerSender) dial(ctx context.Context) (c net.Conn, self bool, err error) {
	d := net.Dialer{Timeout: peerDialTimeout}
	c, err = d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, false, err
	}
	var hello [helloLen]byte
	_ = c.SetReadDeadline(time.Now().Add(peerHelloTimeout))
	if _, err = io.ReadFull(c, hello[:]); err != nil || string(hello[:len(peerMagic)]) != peerMagic || hello[len(peerMagic)] != peerVersion {
		_ = c.Close()
		if err == nil {
			err = fmt.Errorf("peer %s: not a kvtrack peer of protocol version %d", s.addr, peerVersion)
		}
		return nil, false, err
	}
	if [8]byte(hello[len(peerMagic)+1:]) == s.link.id {
		_ = c.Close()
		return nil, true, nil
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, false, nil
}

// send writes queued frames to c until it fails or the sender stops.
func (s *peerSender) send(c net.Conn) {
	w := bufio.NewWriterSize(c, 64<<10)
	for {
		var frame []byte
		select {
		case frame = <-s.queue:
		case <-s.quit:
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(peerWriteTimeout))
		if _, err := w.Write(frame); err != nil {
			s.link.stats.dropped.Add(1)
			return
		}
		// Flush once nothing more is waiting: a burst goes out in one write.
		if len(s.queue) == 0 {
			if err := w.Flush(); err != nil {
				s.link.stats.dropped.Add(1)
				return
			}
		}
		s.link.stats.sent.Add(1)
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

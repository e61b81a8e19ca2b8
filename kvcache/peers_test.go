package kvcache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/kvtrack/kvtrack/internal/testnet"
	"github.com/kvtrack/kvtrack/internal/testwait"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

const peerPod = "10.0.0.1:8000"

// peerReplica starts an Indexer with speculative.peers listening on
// 127.0.0.1:port and dialing endpoints, following peerPod.
func peerReplica(t *testing.T, port int, endpoints ...string) *Indexer {
	t.Helper()
	cfg := Config{Speculative: SpeculativeConfig{Enabled: true, TTL: Duration(time.Minute), Peers: PeersConfig{
		Listen: fmt.Sprintf("127.0.0.1:%d", port), Endpoints: endpoints, ResolveInterval: Duration(50 * time.Millisecond),
	}}}
	ix := newIndexer(t, cfg)
	if err := ix.Start(testwait.Context(t)); err != nil {
		t.Fatal(err)
	}
	if err := ix.AddPod(context.Background(), peerPod); err != nil {
		t.Fatal(err)
	}
	return ix
}

func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// sending waits until ix is connected to n peers: a decision routed before
// a replica's peers are connected is not theirs to hear.
func sending(t *testing.T, ix *Indexer, n int) {
	t.Helper()
	testwait.For(t, fmt.Sprintf("%d peers connected", n), func() bool { return ix.PeerStats().Sending == n })
}

// route scores req on ix and records the decision on peerPod, as the EPP
// plugin's PreRequest does.
func route(t *testing.T, ix *Indexer, req Request) Result {
	t.Helper()
	res, err := ix.Score(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.SpeculateResult(context.Background(), peerPod, res); err != nil {
		t.Fatal(err)
	}
	return res
}

// One replica's routing decision reaches the other as a speculative entry,
// so a request sharing the prefix that the other replica scores follows it.
// Both replicas share one configuration that lists them both; neither sends
// to itself.
func TestPeersShareRoutingDecisions(t *testing.T) {
	pa, pb := testnet.FreePort(t), testnet.FreePort(t)
	eps := []string{loopback(pa), loopback(pb)}
	a, b := peerReplica(t, pa, eps...), peerReplica(t, pb, eps...)
	req := Request{TokenIDs: seq(1, 65), Pods: []string{peerPod}}

	sending(t, a, 1)
	res := route(t, a, req)
	testwait.For(t, "b to record a's decision", func() bool { return matchedOn(t, b, req) == res.Blocks })
	if got := matchedOn(t, a, req); got != res.Blocks {
		t.Errorf("a matched %d, want %d: its own decision, once", got, res.Blocks)
	}

	sending(t, b, 1)
	route(t, b, Request{TokenIDs: seq(1000, 33), Pods: []string{peerPod}})
	testwait.For(t, "a to record b's decision", func() bool {
		return matchedOn(t, a, Request{TokenIDs: seq(1000, 33), Pods: []string{peerPod}}) == 2
	})
	testwait.For(t, "each replica to find itself among the endpoints", func() bool {
		return isSelf(a, loopback(pa)) && isSelf(b, loopback(pb))
	})
	if got := a.peers.stats.received.Load(); got != 1 {
		t.Errorf("a received %d decisions, want 1 (b's; never its own)", got)
	}
	for name, ix := range map[string]*Indexer{"a": a, "b": b} {
		if st := ix.PeerStats(); st.Dropped != 0 || st.Sending != 1 {
			t.Errorf("%s: %+v, want nothing dropped (its decisions for itself are not lost) and one peer sent to", name, st)
		}
	}
}

func isSelf(ix *Indexer, addr string) bool {
	ix.peers.mu.Lock()
	defer ix.peers.mu.Unlock()
	return ix.peers.self[addr]
}

// A peer's decision for a pod this replica does not follow is counted and
// dropped: a peer cannot make a replica keep state for pods it never added.
func TestPeerDecisionForAPodNotFollowedIsDropped(t *testing.T) {
	pa, pb := testnet.FreePort(t), testnet.FreePort(t)
	a := peerReplica(t, pa, loopback(pb))
	b := peerReplica(t, pb, loopback(pa))
	if err := b.RemovePod(context.Background(), peerPod); err != nil {
		t.Fatal(err)
	}
	req := Request{TokenIDs: seq(1, 65), Pods: []string{peerPod}}
	sending(t, a, 1)
	route(t, a, req)
	testwait.For(t, "b to drop the decision", func() bool { return b.peers.stats.unknownPod.Load() == 1 })
	if got := matchedOn(t, b, req); got != 0 {
		t.Errorf("b matched %d blocks on a pod it does not follow, want 0", got)
	}
	st, err := b.Index().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 0 {
		t.Errorf("b's index holds %d entries, want 0", st.Entries)
	}
}

// dialPeer connects to a replica's peer listener as a peer would and reads
// its hello.
func dialPeer(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	hello := make([]byte, helloLen)
	if _, err := io.ReadFull(c, hello); err != nil {
		t.Fatalf("reading hello: %v", err)
	}
	if string(hello[:4]) != peerMagic || hello[4] != peerVersion {
		t.Fatalf("hello %q, want %q version %d", hello, peerMagic, peerVersion)
	}
	return c
}

// A malformed frame ends its connection and is counted; it records
// nothing, and a well-formed frame on a new connection is applied.
func TestMalformedPeerFrameEndsItsConnection(t *testing.T) {
	key := binary.BigEndian.AppendUint64(nil, 7)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"unknown flag", frame(append([]byte{0x80, 1, 'p'}, key...))},
		{"no pod", frame(append([]byte{0, 0}, key...))},
		{"pod longer than the frame", frame([]byte{0, 200, 'p'})},
		{"no keys", frame(append([]byte{0, byte(len(peerPod))}, peerPod...))},
		{"a key cut short", frame(append([]byte{0, byte(len(peerPod))}, peerPod...), key[:5]...)},
		{"length past the limit", binary.BigEndian.AppendUint32(nil, maxPeerFrame+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := testnet.FreePort(t)
			ix := peerReplica(t, port, loopback(port))
			c := dialPeer(t, loopback(port))
			if _, err := c.Write(tc.frame); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
				t.Fatalf("read after a malformed frame: %v, want the connection closed", err)
			}
			if got := ix.peers.stats.malformed.Load(); got != 1 {
				t.Errorf("malformed = %d, want 1", got)
			}

			good := dialPeer(t, loopback(port))
			if _, err := good.Write(appendPeerFrame(nil, peerPod, []kvblock.Key{7}, false)); err != nil {
				t.Fatal(err)
			}
			testwait.For(t, "the good frame to be recorded", func() bool { return ix.peers.stats.received.Load() == 1 })
		})
	}
}

func frame(payload []byte, more ...byte) []byte {
	payload = append(payload, more...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// Only the addresses the endpoints resolve to may connect: another source
// is refused before it can send anything.
func TestPeerFromAnAddressNotAmongTheEndpointsIsRefused(t *testing.T) {
	port := testnet.FreePort(t)
	ix := peerReplica(t, port, "127.0.0.2:1") // the only peer allowed is 127.0.0.2
	c, err := net.Dial("tcp", loopback(port)) // from 127.0.0.1
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, helloLen)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("read: %v, want the connection closed without a hello", err)
	}
	testwait.For(t, "the refusal to be counted", func() bool { return ix.peers.stats.refused.Load() == 1 })
}

// A peer that restarts is dialed again: decisions flow once it is back.
func TestPeerThatRestartsIsDialedAgain(t *testing.T) {
	pa, pb := testnet.FreePort(t), testnet.FreePort(t)
	a := peerReplica(t, pa, loopback(pb))
	req := Request{TokenIDs: seq(1, 65), Pods: []string{peerPod}}

	b := peerReplica(t, pb, loopback(pa))
	sending(t, a, 1)
	route(t, a, req)
	testwait.For(t, "the first b to record a's decision", func() bool { return matchedOn(t, b, req) > 0 })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := peerReplica(t, pb, loopback(pa))
	req2 := Request{TokenIDs: seq(500, 65), Pods: []string{peerPod}}
	// Decisions routed before a's sender has reconnected are dropped (and
	// counted); routing again until one arrives is what a live EPP does.
	testwait.For(t, "the restarted b to record a's decisions", func() bool {
		route(t, a, req2)
		return matchedOn(t, b2, req2) > 0
	})
}

func TestPeersConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"endpoints without listen", func(c *Config) { c.Speculative.Peers = PeersConfig{Endpoints: []string{"a:1"}} }, "speculative.peers.listen"},
		{"speculation off", func(c *Config) { c.Speculative.Enabled = false }, "speculative.peers"},
		{"redis index", func(c *Config) { c.Index.Backend = IndexRedis }, "speculative.peers"},
		{"listen without a port", func(c *Config) { c.Speculative.Peers.Listen = "0.0.0.0" }, "speculative.peers.listen"},
		{"listen on port 0", func(c *Config) { c.Speculative.Peers.Listen = ":0" }, "speculative.peers.listen"},
		{"no endpoints", func(c *Config) { c.Speculative.Peers.Endpoints = nil }, "speculative.peers.endpoints"},
		{"endpoint without a host", func(c *Config) { c.Speculative.Peers.Endpoints = []string{"a:1", ":5558"} }, "speculative.peers.endpoints[1]"},
		{"negative resolve interval", func(c *Config) { c.Speculative.Peers.ResolveInterval = -1 }, "speculative.peers.resolveInterval"},
		{"negative queue", func(c *Config) { c.Speculative.Peers.QueueSize = -1 }, "speculative.peers.queueSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Hash.Seed = "42"
			c.Speculative = SpeculativeConfig{Enabled: true, Peers: PeersConfig{Listen: ":5558", Endpoints: []string{"epp-peers:5558"}}}
			if err := c.Validate(); err != nil {
				t.Fatalf("the valid base: %v", err)
			}
			tc.edit(&c)
			err := c.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want a *FieldError", err)
			}
			var fields []string
			for _, e := range unjoin(err) {
				if errors.As(e, &fe) {
					fields = append(fields, fe.Field)
				}
			}
			if !slices.Contains(fields, tc.field) {
				t.Errorf("errors name %v, want %s: %v", fields, tc.field, err)
			}
		})
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestPeerFrameRoundTrips(t *testing.T) {
	for _, tc := range []peerDecision{
		{pod: "10.0.0.1:8000", keys: []kvblock.Key{1}},
		{pod: "[fd00::1]:8000", keys: []kvblock.Key{0, 1<<64 - 1, 42}, partialTail: true},
		{pod: strings.Repeat("p", 255), keys: make([]kvblock.Key, maxPeerKeys)},
	} {
		b := appendPeerFrame(nil, tc.pod, tc.keys, tc.partialTail)
		if n := binary.BigEndian.Uint32(b); int(n) != len(b)-4 || n > maxPeerFrame {
			t.Fatalf("length prefix %d for %d bytes (limit %d)", n, len(b)-4, maxPeerFrame)
		}
		var got peerDecision
		if err := parsePeerFrame(b[4:], &got); err != nil {
			t.Fatalf("parse: %v", err)
		}
		if got.pod != tc.pod || got.partialTail != tc.partialTail || !slices.Equal(got.keys, tc.keys) {
			t.Errorf("round trip of %s (%d keys, tail %v) gave %s (%d keys, tail %v)",
				tc.pod[:min(len(tc.pod), 20)], len(tc.keys), tc.partialTail, got.pod[:min(len(got.pod), 20)], len(got.keys), got.partialTail)
		}
	}
}

// FuzzPeerFrame: any payload parses or fails with errPeerFrame, never
// panics, and what parses encodes back to the same bytes.
func FuzzPeerFrame(f *testing.F) {
	f.Add(appendPeerFrame(nil, peerPod, []kvblock.Key{1, 2}, true)[4:])
	f.Add([]byte{0, 1, 'p', 0, 0, 0, 0, 0, 0, 0, 9})
	f.Add([]byte{2, 0})
	f.Fuzz(func(t *testing.T, payload []byte) {
		var d peerDecision
		if err := parsePeerFrame(payload, &d); err != nil {
			if !errors.Is(err, errPeerFrame) {
				t.Fatalf("error %v is not errPeerFrame", err)
			}
			return
		}
		if again := appendPeerFrame(nil, d.pod, d.keys, d.partialTail)[4:]; !slices.Equal(again, payload) {
			t.Fatalf("re-encoded %x, want %x", again, payload)
		}
	})
}

// Decisions for a peer that cannot be reached are dropped and counted: they
// are worth something only while their requests wait in a queue, so they
// are not kept for later.
func TestDecisionsForAnUnreachablePeerAreDroppedAndCounted(t *testing.T) {
	pa, nobody := testnet.FreePort(t), testnet.FreePort(t)
	a := peerReplica(t, pa, loopback(nobody))
	testwait.For(t, "a decision to be dropped", func() bool {
		route(t, a, Request{TokenIDs: seq(1, 65), Pods: []string{peerPod}})
		return a.PeerStats().Dropped > 0
	})
	if st := a.PeerStats(); st.Sent != 0 || st.Sending != 0 {
		t.Errorf("stats %+v: sent to or connected with a peer that does not exist", st)
	}
}

// Start reports a peers port it cannot bind, naming the setting.
func TestStartReportsAPeersPortInUse(t *testing.T) {
	port := testnet.FreePort(t)
	ln, err := net.Listen("tcp", loopback(port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ix := newIndexer(t, Config{Speculative: SpeculativeConfig{Enabled: true, Peers: PeersConfig{Listen: loopback(port), Endpoints: []string{loopback(port)}}}})
	err = ix.Start(testwait.Context(t))
	if err == nil || !strings.Contains(err.Error(), "speculative.peers.listen") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start = %v, want an error naming speculative.peers.listen and the port in use", err)
	}
}

// An Accept that fails (descriptors exhausted) is retried: the replica
// goes on hearing its peers after it.
func TestPeersKeepListeningAfterAcceptErrors(t *testing.T) {
	port := testnet.FreePort(t)
	cfg := Config{Speculative: SpeculativeConfig{Enabled: true, Peers: PeersConfig{
		Listen: loopback(port), Endpoints: []string{loopback(port)},
	}}}
	ix := newIndexer(t, cfg)
	ix.peers.wrapListener = func(ln net.Listener) net.Listener { return &failingListener{Listener: ln, failures: 3} }
	if err := ix.Start(testwait.Context(t)); err != nil {
		t.Fatal(err)
	}
	dialPeer(t, loopback(port)) // fails unless the listener still accepts
	if got := ix.peers.stats.acceptErrors.Load(); got != 3 {
		t.Errorf("accept errors = %d, want 3", got)
	}
}

// failingListener fails its first failures Accepts as a process out of
// descriptors does.
type failingListener struct {
	net.Listener
	failures int
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.failures > 0 {
		l.failures--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// A peer's announced frame length reserves nothing: memory grows with the
// bytes that arrive. And one address may hold only a few connections.
func TestAHostilePeerHoldsLittleMemory(t *testing.T) {
	port := testnet.FreePort(t)
	ix := peerReplica(t, port, loopback(port))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range maxConnsPerSource {
		c := dialPeer(t, loopback(port))
		if _, err := c.Write(binary.BigEndian.AppendUint32(nil, maxPeerFrame)); err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(t, "the connections to be held", func() bool { return ix.PeerStats().Connected >= maxConnsPerSource })
	extra, err := net.Dial("tcp", loopback(port))
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if _, err := extra.Read(make([]byte, helloLen)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("connection %d from one address: read %v, want it closed", maxConnsPerSource+1, err)
	}
	testwait.For(t, "the extra connection to be counted", func() bool { return ix.PeerStats().OverLimit == 1 })
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Each connection announced 513 KiB; what it may hold is one read step
	// and a small reader.
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > int64(maxConnsPerSource)*(readStep+64<<10) {
		t.Errorf("heap in use grew by %d KiB for %d announced frames of %d KiB", grew>>10, maxConnsPerSource, maxPeerFrame>>10)
	}
}

// Close does not wait for a dialed peer that never greets: the sender's
// connection is closed under it.
func TestCloseDoesNotWaitForAPeerThatNeverGreets(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := silent.Accept(); err == nil {
			accepted <- c // held, never written to
		}
	}()
	cfg := Config{Speculative: SpeculativeConfig{Enabled: true, Peers: PeersConfig{
		Listen: loopback(testnet.FreePort(t)), Endpoints: []string{silent.Addr().String()},
	}}}
	ix := newIndexer(t, cfg)
	ix.peers.helloTimeout = time.Hour // so that only Close can end the wait
	if err := ix.Start(testwait.Context(t)); err != nil {
		t.Fatal(err)
	}
	var held net.Conn
	select {
	case held = <-accepted:
	case <-testwait.Context(t).Done():
		t.Fatal("the replica never dialed its peer")
	}
	defer held.Close()
	closed := make(chan error, 1)
	go func() { closed <- ix.Close() }()
	var cerr error
	testwait.For(t, "Close to return", func() bool {
		select {
		case cerr = <-closed:
			return true
		default:
			return false
		}
	})
	if cerr != nil {
		t.Fatal(cerr)
	}
}

// A peer that hangs up is noticed at once (no longer counted as sent to),
// and a decision routed after that counts as dropped, not sent.
func TestDecisionsForAPeerThatHungUpAreNotCountedAsSent(t *testing.T) {
	pa, pb := testnet.FreePort(t), testnet.FreePort(t)
	a := peerReplica(t, pa, loopback(pb))
	b := peerReplica(t, pb, loopback(pa))
	req := Request{TokenIDs: seq(1, 65), Pods: []string{peerPod}}
	sending(t, a, 1)
	route(t, a, req)
	testwait.For(t, "b to record a's decision", func() bool { return b.PeerStats().Received == 1 })
	if st := a.PeerStats(); st.Sent != 1 || st.Sending != 1 {
		t.Fatalf("a: %+v, want 1 sent on 1 connection", st)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "a to notice b hung up", func() bool { return a.PeerStats().Sending == 0 })
	route(t, a, req)
	testwait.For(t, "the decision to be dropped", func() bool { return a.PeerStats().Dropped == 1 })
	if st := a.PeerStats(); st.Sent != 1 {
		t.Errorf("a: %+v, want still 1 sent", st)
	}
}

// Two addresses of one replica (a dual-stack name's A and AAAA records)
// make one connection to it: each decision is recorded once.
func TestTwoAddressesOfOnePeerCarryEachDecisionOnce(t *testing.T) {
	if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		l.Close()
	}
	pa, pb := testnet.FreePort(t), testnet.FreePort(t)
	b := newIndexer(t, Config{Speculative: SpeculativeConfig{Enabled: true, Peers: PeersConfig{
		Listen: fmt.Sprintf(":%d", pb), Endpoints: []string{loopback(pa), fmt.Sprintf("[::1]:%d", pa)},
	}}})
	if err := b.Start(testwait.Context(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPod(context.Background(), peerPod); err != nil {
		t.Fatal(err)
	}
	a := peerReplica(t, pa, loopback(pb), fmt.Sprintf("[::1]:%d", pb))
	testwait.For(t, "a to connect to b once and set the other address aside", func() bool {
		a.peers.mu.Lock()
		defer a.peers.mu.Unlock()
		return len(a.peers.byID) == 1 && len(a.peers.alias) == 1
	})
	route(t, a, Request{TokenIDs: seq(1, 65), Pods: []string{peerPod}})
	testwait.For(t, "b to record the decision", func() bool { return b.PeerStats().Received >= 1 })
	// A second decision flushes behind the first on the same connection:
	// once it is in, a duplicate of the first would have been too.
	route(t, a, Request{TokenIDs: seq(100, 65), Pods: []string{peerPod}})
	testwait.For(t, "b to record the second decision", func() bool { return b.PeerStats().Received >= 2 })
	if got := b.PeerStats().Received; got != 2 {
		t.Errorf("b recorded %d decisions, want 2: one per decision", got)
	}
}

// fakeDNS answers lookups from a table it can change; a name set to nil
// fails to resolve.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string][]string
}

func (d *fakeDNS) set(host string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.answers[host] = ips
}

func (d *fakeDNS) lookup(_ context.Context, host string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ips := d.answers[host]
	if ips == nil {
		return nil, &net.DNSError{Err: "server misbehaving", Name: host, IsTemporary: true}
	}
	return ips, nil
}

// peerTargets returns the addresses a link sends to and the IPs it admits.
func peerTargets(l *peerLink) (sends, admits []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for a := range l.peers {
		sends = append(sends, a)
	}
	for ip := range l.allowed {
		admits = append(admits, ip)
	}
	slices.Sort(sends)
	slices.Sort(admits)
	return sends, admits
}

func TestAFailedLookupKeepsOnlyThatEndpointsAddresses(t *testing.T) {
	dns := &fakeDNS{answers: map[string][]string{}}
	l, err := newPeerLink(PeersConfig{Endpoints: []string{"a.peers:9", "b.peers:9"}}, time.Second, logr.Discard(),
		func(context.Context, *peerDecision) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	l.lookupHost = dns.lookup
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		l.shutdown()
		l.senders.Wait()
	}()

	steps := []struct {
		name         string
		a, b         []string // nil: the lookup fails
		sends, admit []string
	}{
		{"both resolve", []string{"127.0.0.2"}, []string{"127.0.0.3"},
			[]string{"127.0.0.2:9", "127.0.0.3:9"}, []string{"127.0.0.2", "127.0.0.3"}},
		{"a fails, b moves: a keeps its address, b's old one goes", nil, []string{"127.0.0.4"},
			[]string{"127.0.0.2:9", "127.0.0.4:9"}, []string{"127.0.0.2", "127.0.0.4"}},
		{"a resolves again, to another address", []string{"127.0.0.5"}, []string{"127.0.0.4"},
			[]string{"127.0.0.4:9", "127.0.0.5:9"}, []string{"127.0.0.4", "127.0.0.5"}},
		{"both fail: both keep theirs", nil, nil,
			[]string{"127.0.0.4:9", "127.0.0.5:9"}, []string{"127.0.0.4", "127.0.0.5"}},
	}
	for _, st := range steps {
		dns.set("a.peers", st.a...)
		dns.set("b.peers", st.b...)
		l.resolve(ctx)
		sends, admits := peerTargets(l)
		if !slices.Equal(sends, st.sends) || !slices.Equal(admits, st.admit) {
			t.Errorf("%s: sends to %v and admits %v, want %v and %v", st.name, sends, admits, st.sends, st.admit)
		}
	}
}

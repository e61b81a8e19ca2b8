package kvevents

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/testnet"
	"github.com/kvtrack/kvtrack/internal/testwait"

	zmq "github.com/pebbe/zmq4"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// goPublisher follows vLLM's ZmqEventPublisher protocol on real libzmq
// sockets: a PUB sending [topic, seq(8B BE), payload], sequence numbers from
// 0 per process, and a ROUTER replay endpoint answering [identity, "",
// start_seq] with every buffered message from start_seq on, then the END
// marker. It also keeps the ground truth: the blocks the engine holds.
type goPublisher struct {
	t      *testing.T
	pod    kvblock.Pod
	topic  string
	layout string // "array" (v0.23) or "map" (v0.24)
	// replyTopic makes replay replies carry the topic frame (vLLM >= v0.25).
	replyTopic bool

	pubEP    string // what the PUB binds or connects to
	bindPub  bool
	replayEP string // "" for no replay endpoint

	pub     *zmq.Socket
	stopRep chan struct{}
	repDone chan struct{}

	mu         sync.Mutex // guards the fields below
	seq        uint64
	sent       []replayed        // the replay buffer
	truth      map[refEntry]int  // blocks the engine holds
	replayHook func(from uint64) // called before answering a replay
}

type pubOpts struct {
	layout     string
	replyTopic bool
	noReplay   bool
	connectTo  string // connect the PUB to this endpoint (the pool binds) instead of binding
	source     string // with connectTo: the local IP to connect from (any 127.0.0.0/8 address on Linux)
	topic      string
	pod        kvblock.Pod
	replayPort int    // bind the replay ROUTER on this port (default: a free one)
	port       int    // without connectTo: bind the PUB on this port (default: a free one)
	host       string // the IP the PUB and the replay ROUTER bind (default 127.0.0.1)
}

func freePort(t testing.TB) int { return testnet.FreePort(t) }

func newGoPublisher(t *testing.T, o pubOpts) *goPublisher {
	t.Helper()
	if o.layout == "" {
		o.layout = "array"
	}
	if o.host == "" {
		o.host = "127.0.0.1"
	}
	p := &goPublisher{t: t, pod: o.pod, topic: o.topic, layout: o.layout, replyTopic: o.replyTopic, truth: make(map[refEntry]int)}
	if o.connectTo != "" {
		p.pubEP = o.connectTo
		if o.source != "" {
			// libzmq's "source;destination" form binds the local end.
			p.pubEP = "tcp://" + o.source + ":0;" + strings.TrimPrefix(o.connectTo, "tcp://")
		}
	} else {
		if o.port == 0 {
			o.port = freePort(t)
		}
		p.pubEP = "tcp://" + net.JoinHostPort(o.host, strconv.Itoa(o.port))
		p.bindPub = true
	}
	if p.pod.Addr == "" {
		p.pod.Addr = strings.TrimPrefix(p.pubEP, "tcp://")
	}
	if !o.noReplay {
		if o.replayPort == 0 {
			o.replayPort = freePort(t)
		}
		p.replayEP = "tcp://" + net.JoinHostPort(o.host, strconv.Itoa(o.replayPort))
	}
	p.start()
	t.Cleanup(p.close)
	return p
}

// start opens the sockets, as a new engine process does.
func (p *goPublisher) start() {
	t := p.t
	pub, err := zmq.NewSocket(zmq.PUB)
	if err != nil {
		t.Fatal(err)
	}
	pub.SetLinger(0)
	pub.SetSndhwm(100000)
	pub.SetIpv6(true)
	if p.bindPub {
		err = retryBind(pub, p.pubEP)
	} else {
		err = pub.Connect(p.pubEP)
	}
	if err != nil {
		t.Fatalf("publisher %s: %v", p.pubEP, err)
	}
	p.pub = pub
	if p.replayEP == "" {
		return
	}
	router, err := zmq.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	router.SetLinger(0)
	router.SetIpv6(true)
	if err := retryBind(router, p.replayEP); err != nil {
		t.Fatalf("replay %s: %v", p.replayEP, err)
	}
	p.stopRep, p.repDone = make(chan struct{}), make(chan struct{})
	go p.serveReplay(router, p.stopRep, p.repDone)
}

// retryBind binds, retrying briefly: a port just released by a restarted
// publisher can take a moment to be free again.
func retryBind(s *zmq.Socket, ep string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.Bind(ep)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *goPublisher) serveReplay(router *zmq.Socket, stop, done chan struct{}) {
	defer close(done)
	defer router.Close()
	poller := zmq.NewPoller()
	poller.Add(router, zmq.POLLIN)
	for {
		select {
		case <-stop:
			return
		default:
		}
		polled, err := poller.Poll(10 * time.Millisecond)
		if err != nil || len(polled) == 0 {
			continue
		}
		frames, err := router.RecvMessageBytes(0)
		if err != nil {
			continue
		}
		// vLLM accepts exactly [identity, "", start_seq].
		if len(frames) != 3 || len(frames[1]) != 0 || len(frames[2]) != 8 {
			continue
		}
		from := binary.BigEndian.Uint64(frames[2])
		p.mu.Lock()
		hook := p.replayHook
		var out []replayed
		for _, m := range p.sent {
			if m.seq >= from {
				out = append(out, m)
			}
		}
		p.mu.Unlock()
		if hook != nil {
			hook(from)
		}
		id := frames[0]
		for _, m := range out {
			seq := binary.BigEndian.AppendUint64(nil, m.seq)
			if p.replyTopic {
				router.SendMessage(id, []byte{}, p.topic, seq, m.payload)
			} else {
				router.SendMessage(id, []byte{}, seq, m.payload)
			}
		}
		if p.replyTopic {
			router.SendMessage(id, []byte{}, []byte{}, endSeq, []byte{})
		} else {
			router.SendMessage(id, []byte{}, endSeq, []byte{})
		}
	}
}

func (p *goPublisher) stopSockets() {
	if p.pub != nil {
		p.pub.Close()
		p.pub = nil
	}
	if p.stopRep != nil {
		close(p.stopRep)
		<-p.repDone
		p.stopRep = nil
	}
}

func (p *goPublisher) close() { p.stopSockets() }

// restart simulates an engine restart: new sockets on the same endpoints,
// sequence numbers from 0 again, an empty replay buffer and an empty cache.
func (p *goPublisher) restart() {
	p.stopSockets()
	p.mu.Lock()
	p.seq = 0
	p.sent = nil
	clear(p.truth)
	p.mu.Unlock()
	p.start()
}

// send publishes one batch payload; with drop it only consumes the
// sequence number and buffers the message for replay, as if the network
// lost it.
func (p *goPublisher) send(payload []byte, drop bool) {
	p.mu.Lock()
	seq := p.seq
	p.seq++
	p.sent = append(p.sent, replayed{seq: seq, payload: payload})
	p.mu.Unlock()
	if drop {
		return
	}
	if _, err := p.pub.SendMessage(p.topic, binary.BigEndian.AppendUint64(nil, seq), payload); err != nil {
		p.t.Errorf("publish: %v", err)
	}
}

// publish sends a batch of events.
func (p *goPublisher) publish(drop bool, events ...mp) {
	p.send(mpArr(mpF64(sampleTS), mpArr(events...), mpInt(int64(p.pod.Rank))), drop)
}

// waitSubscribed publishes empty batches until cond holds: PUB/SUB drops
// what is sent before the subscription reaches the publisher.
func (p *goPublisher) waitSubscribed(cond func() bool) {
	p.t.Helper()
	testwait.For(p.t, "publisher "+p.pubEP+"'s subscriber to receive a message", func() bool {
		if cond() {
			return true
		}
		p.publish(false)
		return false
	})
}

func (p *goPublisher) tier(medium string) kvblock.Tier { return kvblock.TierOf(medium) }

// stored returns a BlockStored event and records its blocks in the truth.
func (p *goPublisher) stored(hashes []uint64, parent uint64, tokens []uint32, medium string) mp {
	p.mu.Lock()
	for _, h := range hashes {
		p.truth[refEntry{p.pod, p.tier(medium), kvblock.Key(h)}]++
	}
	p.mu.Unlock()
	par := mpNil()
	if parent != 0 {
		par = mpUint(parent)
	}
	if p.layout == "map" {
		return mpMap(mpStr("type"), mpStr("BlockStored"), mpStr("block_hashes"), mpUints(hashes...), mpStr("parent_block_hash"), par,
			mpStr("token_ids"), mpTokens(tokens), mpStr("block_size"), mpInt(16), mpStr("lora_id"), mpNil(),
			mpStr("medium"), mpOptStr(medium), mpStr("lora_name"), mpNil(), mpStr("group_idx"), mpInt(0))
	}
	return mpArr(mpStr("BlockStored"), mpUints(hashes...), par, mpTokens(tokens), mpInt(16), mpNil(), mpOptStr(medium),
		mpNil(), mpNil(), mpInt(0), mpStr("full_attention"), mpNil())
}

// removed returns a BlockRemoved event and drops its blocks from the truth.
func (p *goPublisher) removed(hashes []uint64, medium string) mp {
	p.mu.Lock()
	for _, h := range hashes {
		e := refEntry{p.pod, p.tier(medium), kvblock.Key(h)}
		if p.truth[e] <= 1 {
			delete(p.truth, e)
		} else {
			p.truth[e]--
		}
	}
	p.mu.Unlock()
	if p.layout == "map" {
		return mpMap(mpStr("type"), mpStr("BlockRemoved"), mpStr("block_hashes"), mpUints(hashes...), mpStr("medium"), mpOptStr(medium))
	}
	return mpArr(mpStr("BlockRemoved"), mpUints(hashes...), mpOptStr(medium), mpInt(0))
}

// cleared returns an AllBlocksCleared event and empties the truth.
func (p *goPublisher) cleared() mp {
	p.mu.Lock()
	clear(p.truth)
	p.mu.Unlock()
	if p.layout == "map" {
		return mpMap(mpStr("type"), mpStr("AllBlocksCleared"))
	}
	return mpArr(mpStr("AllBlocksCleared"))
}

func (p *goPublisher) groundTruth() map[refEntry]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[refEntry]int, len(p.truth))
	for k, v := range p.truth {
		out[k] = v
	}
	return out
}

// startPool runs a pool until the test ends.
func startPool(t *testing.T, cfg Config, index kvblock.Index, opts ...Option) *Pool {
	t.Helper()
	p, err := NewPool(cfg, index, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := p.Run(ctx)
		if ctx.Err() == nil {
			// Ended before the test did: say so now, so that a wait for
			// messages this pool will never deliver stops at once.
			t.Errorf("Run ended before the test did: %v", err)
			err = nil
		}
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p
}

// waitReady waits until p is ready; it stops early when p's Run ended
// (startPool has then failed the test).
func waitReady(t *testing.T, p *Pool) {
	t.Helper()
	testwait.For(t, "the pool to be ready", func() bool {
		select {
		case <-p.Ready():
			return true
		default:
			return false
		}
	})
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, cond)
}

// waitIndexEquals polls until the index holds exactly want for the pods in
// it, then reports any difference.
func waitIndexEquals(t *testing.T, idx kvblock.Index, want func() map[refEntry]int) {
	t.Helper()
	var d string
	testwait.For(t, "the index to equal the publisher's ground truth", func() bool {
		d = indexDiff(idx, want())
		return d == ""
	})
}

// hashes returns n distinct block hashes starting at base.
func hashes(base uint64, n int) []uint64 {
	hs := make([]uint64, n)
	for i := range hs {
		hs[i] = base + uint64(i)
	}
	return hs
}

// monitorDisconnect watches the PUB socket and returns a func reporting
// whether a subscriber has disconnected since.
func (p *goPublisher) monitorDisconnect() func() bool {
	p.t.Helper()
	addr := fmt.Sprintf("inproc://monitor-%p", p)
	if err := p.pub.Monitor(addr, zmq.EVENT_DISCONNECTED); err != nil {
		p.t.Fatal(err)
	}
	mon, err := zmq.NewSocket(zmq.PAIR)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { mon.Close() })
	if err := mon.Connect(addr); err != nil {
		p.t.Fatal(err)
	}
	seen := false
	return func() bool {
		for !seen {
			ev, _, _, err := mon.RecvEvent(zmq.DONTWAIT)
			if err != nil {
				break
			}
			seen = ev == zmq.EVENT_DISCONNECTED
		}
		return seen
	}
}

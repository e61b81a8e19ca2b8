package doctor

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvevents"
)

// Limits on what one stream keeps, so a busy pod cannot grow the doctor.
const (
	maxRoots    = 32  // root stores kept for the hash check
	maxRecent   = 512 // latest stores kept for the probe
	maxDistinct = 16  // distinct topics, media, block sizes
)

// Stream is what was seen on one pod's DP rank.
type Stream struct {
	Pod            string `json:"pod"`
	Rank           int    `json:"rank"`
	Endpoint       string `json:"endpoint,omitempty"`
	ReplayEndpoint string `json:"replayEndpoint,omitempty"`
	// Unexpected is true for a pod that published (bind mode) but is not
	// among Options.Pods.
	Unexpected bool `json:"unexpected,omitempty"`

	Messages  int    `json:"messages"`
	FirstSeq  uint64 `json:"firstSeq"`
	LastSeq   uint64 `json:"lastSeq"`
	Gaps      int    `json:"gaps"`
	Lost      uint64 `json:"lost"`     // sequence numbers skipped by gaps
	Restarts  int    `json:"restarts"` // times the sequence went backwards
	Malformed int    `json:"malformed"`
	// BatchRanks are the data_parallel_rank values the batches carried.
	BatchRanks []int `json:"batchRanks,omitempty"`

	// Layout is the BlockStored layout ("array of 12 fields", "map of 11
	// entries"). Version is the vLLM releases that send it, set only for a
	// pod that identifies as vLLM (GET /version), whose answer is
	// EngineVersion: other publishers reuse vLLM's layouts.
	Layout        string `json:"layout,omitempty"`
	Version       string `json:"version,omitempty"`
	EngineVersion string `json:"engineVersion,omitempty"`

	Topics     []string `json:"topics,omitempty"`
	Media      []string `json:"media,omitempty"`
	BlockSizes []int    `json:"blockSizes,omitempty"`
	Stored     int      `json:"stored"`
	Removed    int      `json:"removed"`
	Cleared    int      `json:"cleared"`
	// RootStores counts BlockStored events from the root with token_ids:
	// the ones whose hashes can be recomputed.
	RootStores int `json:"rootStores"`
}

// stored is a copy of one BlockStored event.
type stored struct {
	at        time.Time
	hashes    []kvblock.Key
	parent    kvblock.Key
	hasParent bool
	tokens    []uint32
	blockSize int
	extra     [][]blockhash.ExtraKey // nil: none
	extraOK   bool                   // every extra key item has a known type
}

type stream struct {
	Stream
	storedLayout  *kvevents.EventLayout
	removedLayout *kvevents.EventLayout
	batchFields   int
	roots         []stored
	recent        []stored
}

type streamKey struct {
	pod  string
	rank int
}

// socketPlan is one SUB socket: bound (bind mode, one per rank) or
// connected to one pod's rank.
type socketPlan struct {
	endpoint string
	bind     bool
	key      streamKey // connect mode
	rank     int
}

type collector struct {
	opts    *Options
	plans   []socketPlan
	sockets []*kvevents.Subscriber

	mu           sync.Mutex // guards byKey, order, unattributed
	byKey        map[streamKey]*stream
	order        []streamKey
	unattributed map[string]int // bind mode: topics naming no pod -> messages

	messages atomic.Int64
}

func newCollector(o *Options) (*collector, error) {
	c := &collector{opts: o, byKey: map[streamKey]*stream{}, unattributed: map[string]int{}}
	cfg := o.Config.Events
	replayFor := func(pod string, rank int) string {
		host, _, _ := net.SplitHostPort(pod)
		if cfg.ReplayPort == 0 || cfg.ReplayPort+rank > 65535 {
			return ""
		}
		return "tcp://" + net.JoinHostPort(host, strconv.Itoa(cfg.ReplayPort+rank))
	}
	for i, pod := range o.Pods {
		host, _, _ := net.SplitHostPort(pod)
		base := "tcp://" + net.JoinHostPort(host, strconv.Itoa(cfg.Port))
		if len(o.Events) > 0 {
			base = o.Events[i]
		}
		for r := range o.DataParallelSize {
			s := c.streamLocked(streamKey{pod, r})
			s.ReplayEndpoint = replayFor(pod, r)
			if o.bindMode() {
				continue
			}
			ep, err := kvevents.RankEndpoint(base, r)
			if err != nil {
				return nil, fmt.Errorf("%w: pod %s: %v", ErrOptions, pod, err)
			}
			s.Endpoint = ep
			c.plans = append(c.plans, socketPlan{endpoint: ep, key: streamKey{pod, r}, rank: r})
		}
	}
	if o.bindMode() {
		for r := range o.DataParallelSize {
			ep, err := kvevents.RankEndpoint(cfg.Endpoint, r)
			if err != nil {
				return nil, fmt.Errorf("%w: events.endpoint: %v", ErrOptions, err)
			}
			c.plans = append(c.plans, socketPlan{endpoint: ep, bind: true, rank: r})
		}
	}
	for _, p := range c.plans {
		sock, err := openSub(p)
		if err != nil {
			c.closeSockets()
			return nil, err
		}
		c.sockets = append(c.sockets, sock)
	}
	return c, nil
}

// openSub opens a SUB socket that takes every topic: the doctor must see
// the messages the router's filter would drop, to say so.
func openSub(p socketPlan) (*kvevents.Subscriber, error) {
	sub, err := kvevents.NewSubscriber(p.endpoint, kvevents.SubscriberOptions{Bind: p.bind})
	if err != nil {
		return nil, fmt.Errorf("doctor: %w", err)
	}
	return sub, nil
}

func (c *collector) closeSockets() {
	for _, s := range c.sockets {
		s.Close()
	}
	c.sockets = nil
}

// start runs one receiver per socket until ctx ends; each owns its socket.
func (c *collector) start(ctx context.Context, wg *sync.WaitGroup) {
	for i, sock := range c.sockets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.receive(ctx, sock, c.plans[i])
		}()
	}
	c.sockets = nil
}

func (c *collector) receive(ctx context.Context, sock *kvevents.Subscriber, p socketPlan) {
	defer sock.Close()
	d := kvevents.NewDecoder()
	for {
		frames, err := sock.Recv(ctx)
		if err != nil {
			return
		}
		c.messages.Add(1)
		c.handle(d, p, frames, time.Now())
	}
}

// handle records one message.
func (c *collector) handle(d *kvevents.Decoder, p socketPlan, frames [][]byte, at time.Time) {
	var topic string
	if len(frames) > 0 {
		topic = string(frames[0])
	}
	key := p.key
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.bind {
		pod, ok := podFromTopic(topic)
		if !ok {
			if len(c.unattributed) < maxDistinct || c.unattributed[topic] > 0 {
				c.unattributed[topic]++
			}
			return
		}
		key = streamKey{pod, p.rank}
	}
	s, known := c.byKey[key]
	if !known {
		s = c.streamLocked(key)
		s.Unexpected = true
	}
	if len(s.Topics) < maxDistinct && !slices.Contains(s.Topics, topic) {
		s.Topics = append(s.Topics, topic)
	}
	if len(frames) != 3 || len(frames[1]) != 8 {
		s.Malformed++
		return
	}
	seq := binary.BigEndian.Uint64(frames[1])
	switch {
	case s.Messages == 0:
		s.FirstSeq = seq
	case seq == s.LastSeq+1:
	case seq > s.LastSeq+1:
		s.Gaps++
		s.Lost += seq - s.LastSeq - 1
	default:
		s.Restarts++
	}
	s.Messages++
	s.LastSeq = seq
	c.record(d, s, frames[2], at)
}

// record decodes a payload into s. c.mu must be held.
func (c *collector) record(d *kvevents.Decoder, s *stream, payload []byte, at time.Time) {
	lay, err := d.Layout(payload)
	if err != nil {
		s.Malformed++
		return
	}
	s.batchFields = lay.BatchFields
	if s.storedLayout == nil && lay.Stored.Fields > 0 {
		s.storedLayout = &lay.Stored
	}
	if s.removedLayout == nil && lay.Removed.Fields > 0 {
		s.removedLayout = &lay.Removed
	}
	b, err := d.Decode(payload)
	if err != nil {
		s.Malformed++
		return
	}
	s.Malformed += b.MalformedEvents
	if b.HasRank && len(s.BatchRanks) < maxDistinct && !slices.Contains(s.BatchRanks, b.DPRank) {
		s.BatchRanks = append(s.BatchRanks, b.DPRank)
	}
	for i := range b.Events {
		ev := &b.Events[i]
		switch ev.Kind {
		case kvevents.BlockRemoved:
			s.Removed++
			addMedium(s, ev.Medium)
		case kvevents.AllBlocksCleared:
			s.Cleared++
		case kvevents.BlockStored:
			s.Stored++
			addMedium(s, ev.Medium)
			if len(s.BlockSizes) < maxDistinct && !slices.Contains(s.BlockSizes, ev.BlockSize) {
				s.BlockSizes = append(s.BlockSizes, ev.BlockSize)
			}
			st := copyStored(ev, at)
			if !ev.HasParent && len(ev.TokenIDs) > 0 {
				s.RootStores++
				if len(s.roots) < maxRoots {
					s.roots = append(s.roots, st)
				}
			}
			if len(s.recent) >= maxRecent {
				s.recent = slices.Delete(s.recent, 0, 1)
			}
			s.recent = append(s.recent, st)
		}
	}
}

func addMedium(s *stream, m string) {
	if m == "" {
		m = "GPU" // events before vLLM v0.10.2 carry none
	}
	if len(s.Media) < maxDistinct && !slices.Contains(s.Media, m) {
		s.Media = append(s.Media, m)
	}
}

// copyStored copies ev out of the decoder's buffers.
func copyStored(ev *kvevents.Event, at time.Time) stored {
	st := stored{at: at, parent: kvblock.Key(ev.ParentHash), hasParent: ev.HasParent,
		tokens: slices.Clone(ev.TokenIDs), blockSize: ev.BlockSize, extraOK: true}
	st.hashes = make([]kvblock.Key, len(ev.BlockHashes))
	for i, h := range ev.BlockHashes {
		st.hashes[i] = kvblock.Key(h)
	}
	if ev.ExtraKeys == nil {
		return st
	}
	hasAny := false
	st.extra = make([][]blockhash.ExtraKey, len(ev.ExtraKeys))
	for i, block := range ev.ExtraKeys {
		for _, k := range block {
			x, ok := k.Block()
			if !ok {
				st.extraOK = false
				continue
			}
			if k.Kind == kvevents.ExtraBytes {
				x = blockhash.ExtraBytes(bytes.Clone(k.Bytes))
			}
			st.extra[i] = append(st.extra[i], x)
			hasAny = true
		}
	}
	if !hasAny {
		st.extra = nil
	}
	return st
}

// streamLocked returns the stream for key, creating it. c.mu must be held
// (or c not yet shared).
func (c *collector) streamLocked(key streamKey) *stream {
	if s, ok := c.byKey[key]; ok {
		return s
	}
	s := &stream{Stream: Stream{Pod: key.pod, Rank: key.rank}}
	if c.opts.bindMode() {
		s.Endpoint, _ = kvevents.RankEndpoint(c.opts.Config.Events.Endpoint, key.rank)
	}
	c.byKey[key] = s
	c.order = append(c.order, key)
	return s
}

// podFromTopic reads the pod out of a topic kv@<pod-ip:port>@<model>.
func podFromTopic(topic string) (string, bool) {
	_, rest, ok := strings.Cut(topic, "@")
	if !ok {
		return "", false
	}
	pod, _, ok := strings.Cut(rest, "@")
	if !ok || pod == "" {
		return "", false
	}
	return pod, true
}

// streams returns a copy of every stream's facts, in plan order; engines
// maps a pod to the vLLM version it reports.
func (c *collector) streams(engines map[string]string) []Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Stream, 0, len(c.order))
	for _, k := range c.order {
		s := c.byKey[k]
		st := s.Stream
		if s.storedLayout != nil {
			var version string
			st.Layout, version = describeLayout(*s.storedLayout, s.batchFields)
			if v := engines[st.Pod]; v != "" {
				st.Version, st.EngineVersion = version, v
			}
		}
		out = append(out, st)
	}
	return out
}

// snapshot returns the streams for analysis (copies of the slices the
// receivers append to are not needed: the receivers have stopped).
func (c *collector) snapshot() []*stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*stream, 0, len(c.order))
	for _, k := range c.order {
		out = append(out, c.byKey[k])
	}
	return out
}

// storesSince returns copies of pod's stores received at or after t, on
// any rank (a request may land on any of them).
func (c *collector) storesSince(pod string, t time.Time) []stored {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []stored
	for _, k := range c.order {
		if k.pod != pod {
			continue
		}
		for _, st := range c.byKey[k].recent {
			if !st.at.Before(t) {
				out = append(out, st)
			}
		}
	}
	return out
}

// dialAll tries a TCP connection to every connect-mode endpoint, to tell
// "nothing listens there" from "a publisher listens but is silent". The
// result arrives on the channel when every dial is done.
func (c *collector) dialAll(ctx context.Context) <-chan map[string]error {
	out := make(chan map[string]error, 1)
	var eps []string
	for _, p := range c.plans {
		if !p.bind {
			eps = append(eps, p.endpoint)
		}
	}
	go func() {
		res := make(map[string]error, len(eps))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, ep := range eps {
			wg.Go(func() {
				err := dialEndpoint(ctx, ep)
				mu.Lock()
				res[ep] = err
				mu.Unlock()
			})
		}
		wg.Wait()
		out <- res
	}()
	return out
}

func dialEndpoint(ctx context.Context, ep string) error {
	addr, err := kvevents.PodFromEndpoint(ep)
	if err != nil || !strings.HasPrefix(ep, "tcp://") {
		return nil // not tcp: nothing to dial
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// progress reports the listening state until ctx ends, then closes done.
func (c *collector) progress(ctx context.Context, o *Options, start time.Time, done chan<- struct{}) {
	defer close(done)
	if o.Progress == nil {
		return
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		flowing := 0
		for _, s := range c.byKey {
			if s.Messages > 0 {
				flowing++
			}
		}
		n := len(c.byKey)
		c.mu.Unlock()
		el := time.Since(start).Truncate(100 * time.Millisecond)
		o.Progress(fmt.Sprintf("listening %v/%v: %d of %d streams sending, %d messages", el, o.Duration, flowing, n, c.messages.Load()))
	}
}

// describeLayout names a BlockStored layout and the vLLM releases that
// send it (vllm-kv-events.md §0, §3.1).
func describeLayout(l kvevents.EventLayout, batchFields int) (layout, version string) {
	if l.Map {
		v := "v0.24 or later"
		if slices.Contains(l.Keys, "locality") {
			v = "v0.25/v0.26 or later"
		}
		return fmt.Sprintf("map of %d entries", l.Fields), v
	}
	layout = fmt.Sprintf("array of %d fields", l.Fields)
	switch l.Fields {
	case 6:
		if batchFields == 2 {
			return layout, "v0.9.0 (or SGLang)"
		}
		return layout, "v0.9.1 to v0.10.1 (or SGLang)"
	case 7:
		return layout, "v0.10.2 to about v0.14 (or SGLang)"
	case 8:
		return layout, "about v0.15 to v0.17"
	case 9:
		return layout, "about v0.18 to v0.19"
	case 10:
		return layout, "about v0.20 to v0.22"
	case 12:
		return layout, "v0.23"
	}
	if l.Fields > 12 {
		return layout, "newer than v0.23 (unknown trailing fields)"
	}
	return layout, "unknown"
}

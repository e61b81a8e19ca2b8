package kvevents

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are a Pool's cumulative counters and current gauges.
type Stats struct {
	Received uint64 // messages received from SUB sockets
	Applied  uint64 // events applied to the index (replayed ones included)

	DroppedQueueFull  uint64 // messages dropped at a full worker queue
	DroppedHeld       uint64 // live messages dropped while a replay was in flight
	DroppedUnknownPod uint64 // bind mode: messages whose topic names no pod

	MalformedMessages uint64 // messages without the 3 frames [topic, seq, payload]
	MalformedBatches  uint64 // payloads that do not decode
	MalformedEvents   uint64 // events skipped for a field of the wrong type
	UnknownTags       uint64 // events of an unknown kind, skipped
	UnknownFields     uint64 // fields not understood, skipped
	UnknownMedia      uint64 // events naming a medium Config.Media does not name, applied as kvblock.TierOther

	SequenceGaps   uint64 // gaps seen in a (pod, rank) sequence
	Lost           uint64 // messages known missed and not recovered by replay
	Replays        uint64 // replays that completed
	ReplayFailures uint64 // replays abandoned (timeout, connection, bad reply)
	Restarts       uint64 // sequences that went backwards: engine restarts

	// After an index write failed, the pod was resynced from its replay
	// endpoint (Resynced) or cleared and left cold (ResyncCleared).
	Resynced, ResyncCleared uint64

	// Rejected counts messages (and, for RejectUnknownPeer, held
	// connections) by RejectReason; see Limits and Security.
	Rejected    [numRejectReasons]uint64
	UnknownRank uint64 // batches naming a data-parallel rank >= Config.DataParallelSize
	Disconnects uint64 // bind mode: publisher connections closed (peer gone, or a message over Limits.MaxMessageBytes)

	QueuedBytes     int64 // payload bytes received and not yet applied
	QueuedBytesPeak int64 // the most QueuedBytes has been

	HashMismatches uint64 // root BlockStored events whose hashes did not recompute
	Unresolved     uint64 // tokens scheme: events naming an engine hash with no known key
	IndexErrors    uint64 // index operations that failed

	Pods              int // (pod, rank) streams known
	PodsWithoutReplay int // of which without a replay endpoint configured (a setting, not a fault)
}

// counters are the atomics behind Stats; the hot path only adds to them.
type counters struct {
	received, applied                                atomic.Uint64
	droppedQueue, droppedHeld, droppedUnknownPod     atomic.Uint64
	malformedMsgs, malformedBatches, malformedEvents atomic.Uint64
	unknownTags, unknownFields, unknownMedia         atomic.Uint64
	gaps, lost, replays, replayFailures, restarts    atomic.Uint64
	hashMismatches, unresolved, indexErrors          atomic.Uint64
	rejected                                         [numRejectReasons]atomic.Uint64
	disconnects, unknownRank                         atomic.Uint64
	resynced, resyncCleared                          atomic.Uint64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Received: c.received.Load(), Applied: c.applied.Load(),
		DroppedQueueFull: c.droppedQueue.Load(), DroppedHeld: c.droppedHeld.Load(), DroppedUnknownPod: c.droppedUnknownPod.Load(),
		MalformedMessages: c.malformedMsgs.Load(), MalformedBatches: c.malformedBatches.Load(), MalformedEvents: c.malformedEvents.Load(),
		UnknownTags: c.unknownTags.Load(), UnknownFields: c.unknownFields.Load(), UnknownMedia: c.unknownMedia.Load(),
		SequenceGaps: c.gaps.Load(), Lost: c.lost.Load(), Replays: c.replays.Load(), ReplayFailures: c.replayFailures.Load(),
		Restarts:       c.restarts.Load(),
		HashMismatches: c.hashMismatches.Load(), Unresolved: c.unresolved.Load(), IndexErrors: c.indexErrors.Load(),
		Disconnects: c.disconnects.Load(), UnknownRank: c.unknownRank.Load(),
		Resynced: c.resynced.Load(), ResyncCleared: c.resyncCleared.Load(),
	}
	for r := range s.Rejected {
		s.Rejected[r] = c.rejected[r].Load()
	}
	return s
}

// collector exports a Pool's counters at scrape time, so the event path
// never touches prometheus types.
type collector struct {
	p *Pool

	received, applied, dropped, malformed, unknownTags, unknownFields *prometheus.Desc
	unknownMedia                                                      *prometheus.Desc
	gaps, lost, replays, restarts, hashMismatch, unresolved, indexErr *prometheus.Desc
	pods, withoutReplay, replayConfigured, lastMessage                *prometheus.Desc
	rejected, podRejected, disconnects, queued, unknownRank, resyncs  *prometheus.Desc
}

func newCollector(p *Pool) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{
		p:                p,
		received:         d("kvtrack_events_received_total", "KV-event messages received from ZMQ."),
		applied:          d("kvtrack_events_applied_total", "KV events applied to the index."),
		dropped:          d("kvtrack_events_dropped_total", "KV-event messages dropped, by reason.", "reason"),
		malformed:        d("kvtrack_events_malformed_total", "Malformed KV-event input skipped, by what was malformed.", "what"),
		unknownTags:      d("kvtrack_events_unknown_tags_total", "KV events of an unknown kind, skipped."),
		unknownFields:    d("kvtrack_events_unknown_fields_total", "KV-event fields not understood, skipped."),
		unknownMedia:     d("kvtrack_events_unknown_media_total", "KV events naming a medium the configured tier weights do not name; applied as the tier of other media, which weighs 0."),
		gaps:             d("kvtrack_events_sequence_gaps_total", "Gaps seen in a (pod, rank) message sequence."),
		lost:             d("kvtrack_events_lost_total", "KV-event messages known missed and not recovered by replay."),
		replays:          d("kvtrack_events_replays_total", "Replays requested from publishers, by result.", "result"),
		restarts:         d("kvtrack_events_restarts_total", "Publisher sequences that went backwards (engine restarts); the pod's blocks were cleared."),
		hashMismatch:     d("kvtrack_events_hash_mismatches_total", "Root BlockStored events whose published hashes the configured algorithm, seed and block size do not reproduce."),
		unresolved:       d("kvtrack_events_unresolved_total", "Tokens key scheme: events naming an engine hash with no known key."),
		indexErr:         d("kvtrack_events_index_errors_total", "Index operations that failed while applying events."),
		pods:             d("kvtrack_events_pods", "(pod, rank) event streams known."),
		withoutReplay:    d("kvtrack_events_pods_without_replay", "(pod, rank) event streams with no replay endpoint configured: a gap is counted, not repaired."),
		replayConfigured: d("kvtrack_events_replay_configured", "1 if the (pod, rank) event stream has a replay endpoint configured, else 0.", "pod", "rank"),
		lastMessage:      d("kvtrack_events_last_timestamp_seconds", "Unix time the last KV-event message of the (pod, rank) stream was taken; absent before the first.", "pod", "rank"),
		rejected:         d("kvtrack_events_rejected_total", "KV-event messages (and held publisher handshakes) rejected by the source checks and limits, by reason.", "reason"),
		podRejected:      d("kvtrack_events_pod_rejected_total", "KV-event messages of a known (pod, rank) rejected by a limit, by reason.", "pod", "rank", "reason"),
		disconnects:      d("kvtrack_events_disconnects_total", "Publisher connections to the bound socket closed: the peer went away, or sent a message over limits.maxMessageBytes."),
		queued:           d("kvtrack_events_queued_bytes", "KV-event payload bytes received and not yet applied."),
		resyncs:          d("kvtrack_events_resyncs_total", "Pods resynced after an index backend failure, by result: replayed from the engine, or cleared and left cold.", "result"),
		unknownRank:      d("kvtrack_events_unknown_rank_total", "KV-event batches naming a data-parallel rank beyond the configured dataParallelSize."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.received, c.applied, c.dropped, c.malformed, c.unknownTags, c.unknownFields, c.unknownMedia,
		c.gaps, c.lost, c.replays, c.restarts, c.hashMismatch, c.unresolved, c.indexErr, c.pods, c.withoutReplay, c.replayConfigured, c.lastMessage,
		c.rejected, c.podRejected, c.disconnects, c.queued, c.unknownRank, c.resyncs} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.received, s.Received)
	counter(c.applied, s.Applied)
	counter(c.dropped, s.DroppedQueueFull, "queue_full")
	counter(c.dropped, s.DroppedHeld, "held_during_replay")
	counter(c.dropped, s.DroppedUnknownPod, "unknown_pod")
	counter(c.malformed, s.MalformedMessages, "message")
	counter(c.malformed, s.MalformedBatches, "batch")
	counter(c.malformed, s.MalformedEvents, "event")
	counter(c.unknownTags, s.UnknownTags)
	counter(c.unknownFields, s.UnknownFields)
	counter(c.unknownMedia, s.UnknownMedia)
	counter(c.gaps, s.SequenceGaps)
	counter(c.lost, s.Lost)
	counter(c.replays, s.Replays, "ok")
	counter(c.replays, s.ReplayFailures, "failed")
	counter(c.restarts, s.Restarts)
	counter(c.hashMismatch, s.HashMismatches)
	counter(c.unresolved, s.Unresolved)
	counter(c.indexErr, s.IndexErrors)
	ch <- prometheus.MustNewConstMetric(c.pods, prometheus.GaugeValue, float64(s.Pods))
	ch <- prometheus.MustNewConstMetric(c.withoutReplay, prometheus.GaugeValue, float64(s.PodsWithoutReplay))
	for _, st := range c.p.streamStates() {
		rank := strconv.Itoa(st.pod.Rank)
		replay := 0.0
		if st.replay {
			replay = 1
		}
		ch <- prometheus.MustNewConstMetric(c.replayConfigured, prometheus.GaugeValue, replay, st.pod.Addr, rank)
		if st.lastMessage > 0 {
			ch <- prometheus.MustNewConstMetric(c.lastMessage, prometheus.GaugeValue, float64(st.lastMessage)/1e9, st.pod.Addr, rank)
		}
	}
	for r, n := range s.Rejected {
		counter(c.rejected, n, RejectReason(r).String())
	}
	counter(c.disconnects, s.Disconnects)
	counter(c.unknownRank, s.UnknownRank)
	counter(c.resyncs, s.Resynced, "replayed")
	counter(c.resyncs, s.ResyncCleared, "cleared")
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(s.QueuedBytes))
	// Only the streams of pods added with AddPod get a pod label, so the
	// series stay bounded, and a removed pod's series go with it.
	for _, pr := range c.p.podRejections() {
		counter(c.podRejected, pr.n, pr.pod.Addr, strconv.Itoa(pr.pod.Rank), pr.reason.String())
	}
}

package doctor

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// analyzer turns what the collector saw into checks.
type analyzer struct {
	opts    *Options
	col     *collector
	reach   map[string]error // connect endpoint -> TCP dial error
	replays map[streamKey]replayResult
	probes  []Probe
	engines map[string]string // pod -> vLLM version from GET /version, "" when not vLLM
}

func (a *analyzer) run(c *checklist) {
	streams := a.col.snapshot()
	for _, s := range streams {
		a.streamChecks(c, s)
	}
	a.seedAgreement(c, streams)
	a.unattributed(c)
	for _, p := range a.probes {
		reason := p.Verdict + ": " + p.Reason
		if p.Verdict == "match" {
			reason = p.Reason
		}
		c.add(Check{Name: "probe-" + p.Kind, Pod: p.Pod, Status: p.Status, Reason: reason, Fix: p.Fix})
	}
}

func (a *analyzer) hashConfig() blockhash.HashConfig {
	h := a.opts.Config.Hash
	return blockhash.HashConfig{Algorithm: blockhash.Algorithm(h.Algorithm), Seed: h.Seed, BlockSize: h.BlockSize}
}

func (a *analyzer) streamChecks(c *checklist, s *stream) {
	at := func(name string, st Status, reason, fix string) {
		rank := s.Rank
		c.add(Check{Name: name, Pod: s.Pod, Rank: &rank, Status: st, Reason: reason, Fix: fix})
	}
	if s.Messages == 0 {
		reason, fix := a.silence(s)
		at("events", Fail, reason, fix)
		a.replayCheck(at, s)
		return
	}
	counts := fmt.Sprintf("%d messages (%d BlockStored, %d BlockRemoved, %d AllBlocksCleared) in %v",
		s.Messages, s.Stored, s.Removed, s.Cleared, a.opts.Duration)
	if s.Unexpected {
		at("events", Warn, counts+" from a pod that is not among the pods given", "add it to --pods, or check which engine publishes with its address in the topic")
	} else {
		at("events", Pass, counts, "")
	}
	if s.Malformed > 0 {
		at("events", Fail, fmt.Sprintf("%d messages or events could not be decoded; the router skips them", s.Malformed),
			"check that the publisher is vLLM (or a compatible engine); run `kvtrack listen` to see them")
	}
	a.layoutCheck(at, s)
	a.sequenceCheck(at, s)
	a.replayCheck(at, s)
	a.topicCheck(at, s)
	a.mediaCheck(at, s)
	a.blockSizeCheck(at, s)
	a.hashCheck(at, s)
}

type addFunc func(name string, st Status, reason, fix string)

// silence explains a stream that sent nothing.
func (a *analyzer) silence(s *stream) (reason, fix string) {
	d := a.opts.Duration
	probed := ""
	for _, p := range a.probes {
		if p.Pod == s.Pod && p.Verdict != "request-failed" && p.Verdict != "not-run" {
			probed = " even though the probe's requests succeeded"
		}
	}
	if a.opts.bindMode() {
		reason = fmt.Sprintf("no message whose topic names %s arrived at %s within %v%s", s.Pod, s.Endpoint, d, probed)
		if len(a.col.unattributed) > 0 {
			reason += "; messages with topics that name no pod did arrive (see the topic check)"
		}
		fix = fmt.Sprintf(`start vLLM with --kv-events-config {"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://<this host>:<port of events.endpoint>","topic":"kv@%s@<model>"} (an endpoint naming a host makes vLLM connect to the router)`, s.Pod)
		return reason, fix
	}
	if err, ok := a.reach[s.Endpoint]; ok && err != nil {
		reason = fmt.Sprintf("nothing accepts connections at %s (%v): the pod is unreachable from here or its publisher listens elsewhere", s.Endpoint, err)
		fix = fmt.Sprintf(`check the pod address, and that vLLM's kv-events endpoint is "tcp://*:%d" (events.port; DP rank r uses port + r), or name the endpoint with --events`, a.opts.Config.Events.Port)
		return reason, fix
	}
	reason = fmt.Sprintf("%s accepts connections but sent no event within %v%s. A ZMQ subscription never fails, so this means KV events are off, something other than vLLM's publisher holds the port, or the pod cached no new blocks (vLLM publishes only then)", s.Endpoint, d, probed)
	fix = `enable events on the pod (--kv-events-config {"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557"}, with prefix caching on), and send it new prompts during the check or re-run with --probe`
	return reason, fix
}

func (a *analyzer) layoutCheck(at addFunc, s *stream) {
	l := s.storedLayout
	if l == nil {
		at("layout", Warn, "no BlockStored arrived, so the layout (and the vLLM version) is unknown", "send the pod new prompts during the check, or re-run with --probe")
		return
	}
	layout, version := describeLayout(*l, s.batchFields)
	var reason string
	if v := a.engines[s.Pod]; v != "" {
		reason = fmt.Sprintf("BlockStored is %s %s, as vLLM %s sends; the pod reports vLLM %s", article(layout), layout, version, v)
	} else {
		reason = fmt.Sprintf("BlockStored is %s %s (the layout of vLLM %s; the pod does not answer GET /version as vLLM does, so no vLLM version is claimed for it)", article(layout), layout, version)
	}
	if !l.Map && l.Fields == 6 {
		at("layout", Warn, reason+"; before v0.10.2 vLLM hashes with Python's builtin hash() by default, which no one can reproduce",
			"upgrade vLLM, run it with --prefix-caching-hash-algo sha256_cbor_64bit (v0.10.x), or use keyScheme: tokens")
		return
	}
	at("layout", Pass, reason, "")
}

func (a *analyzer) sequenceCheck(at addFunc, s *stream) {
	var problems []string
	if s.Gaps > 0 {
		problems = append(problems, fmt.Sprintf("%d gaps lost %d messages (the publisher's queue or HWM overflowed, or the network dropped them); the router repairs gaps by replay", s.Gaps, s.Lost))
	}
	if s.Restarts > 0 {
		problems = append(problems, fmt.Sprintf("the sequence went backwards %d times: the engine restarted (the router then clears the pod)", s.Restarts))
	}
	if len(s.BatchRanks) > 0 && !slices.Equal(s.BatchRanks, []int{s.Rank}) {
		problems = append(problems, fmt.Sprintf("batches carry data_parallel_rank %v on the endpoint of rank %d", s.BatchRanks, s.Rank))
	}
	if len(problems) > 0 {
		at("sequence", Warn, fmt.Sprintf("seq %d to %d: %s", s.FirstSeq, s.LastSeq, strings.Join(problems, "; ")), "enable replay (see the replay check) and check the publisher's load")
		return
	}
	at("sequence", Pass, fmt.Sprintf("seq %d to %d without gaps", s.FirstSeq, s.LastSeq), "")
}

func (a *analyzer) replayCheck(at addFunc, s *stream) {
	if s.ReplayEndpoint == "" {
		at("replay", Warn, "no replay endpoint is configured (events.replayPort is 0): after a lost message the router's index stays wrong until the blocks are evicted",
			`start vLLM with "replay_endpoint":"tcp://*:5558" in --kv-events-config and set events.replayPort: 5558`)
		return
	}
	r := a.replays[streamKey{s.Pod, s.Rank}]
	if r.replies == 0 && !r.ended {
		at("replay", Fail, fmt.Sprintf("the replay endpoint %s did not answer a replay request (%v)", s.ReplayEndpoint, r.err),
			fmt.Sprintf(`set "replay_endpoint":"tcp://*:%d" in the pod's --kv-events-config (DP rank r uses port + r), or set events.replayPort to the port it uses (0 disables replay)`, a.opts.Config.Events.ReplayPort))
		return
	}
	framing := "[seq, payload] replies, vLLM up to v0.24"
	if r.topicFrm {
		framing = "[topic, seq, payload] replies, vLLM v0.25+"
	}
	if r.replies == 0 {
		framing = "empty answer"
	}
	at("replay", Pass, fmt.Sprintf("%s answered a replay from seq %d with %d messages (%s)", s.ReplayEndpoint, r.from, r.replies, framing), "")
}

func (a *analyzer) topicCheck(at addFunc, s *stream) {
	filter := *a.opts.Config.Events.TopicFilter
	var dropped []string
	for _, t := range s.Topics {
		if !strings.HasPrefix(t, filter) {
			dropped = append(dropped, fmt.Sprintf("%q", t))
		}
	}
	if len(dropped) > 0 {
		at("topic", Fail, fmt.Sprintf("the pod publishes topic %s, which the router's filter %q drops: it indexes nothing from this pod", strings.Join(dropped, ", "), filter),
			fmt.Sprintf(`set the pod's kv-events "topic" to "kv@%s@<model>" (the convention the filter %q expects), or events.topicFilter to a prefix of its topic`, s.Pod, filter))
		return
	}
	if a.opts.Model != "" {
		for _, t := range s.Topics {
			if _, model, ok := strings.Cut(strings.TrimPrefix(t, filter), "@"); ok && model != a.opts.Model {
				at("topic", Warn, fmt.Sprintf("topic %q names model %q, not %q", t, model, a.opts.Model), "check that the pod serves the model the router expects")
				return
			}
		}
	}
	at("topic", Pass, fmt.Sprintf("topic %q passes the filter %q", strings.Join(s.Topics, `", "`), filter), "")
}

func (a *analyzer) mediaCheck(at addFunc, s *stream) {
	if len(s.Media) == 0 {
		return
	}
	w := a.opts.Config.Index.TierWeights
	for _, m := range s.Media {
		if w[m] == 0 {
			at("media", Warn, fmt.Sprintf("media %v seen; %s weighs 0 in index.tierWeights, so blocks there never add to a weighted score", s.Media, m),
				fmt.Sprintf("add %s to index.tierWeights (for example %s: 0.5)", m, m))
			return
		}
	}
	at("media", Pass, fmt.Sprintf("media %v seen, each with a tier weight", s.Media), "")
}

func (a *analyzer) blockSizeCheck(at addFunc, s *stream) {
	want := a.opts.Config.Hash.BlockSize
	for _, bs := range s.BlockSizes {
		if bs > 0 && bs != want {
			at("block-size", Fail, fmt.Sprintf("events carry block_size %d; the config says %d, so no prompt key can match", bs, want),
				fmt.Sprintf("set hash.blockSize: %d (the engines' --block-size)", bs))
			return
		}
	}
	if len(s.BlockSizes) > 0 {
		at("block-size", Pass, fmt.Sprintf("events carry block_size %d, as configured", want), "")
	}
}

func (a *analyzer) hashCheck(at addFunc, s *stream) {
	if a.opts.Config.KeyScheme == kvcache.KeySchemeTokens {
		at("hashing", Pass, "keyScheme tokens: keys come from token_ids, the engine's hash algorithm and seed do not matter", "")
		return
	}
	if len(s.roots) == 0 {
		at("hashing", Warn, "no BlockStored from the root with token_ids arrived, so the hashes could not be checked",
			"send the pod a new prompt during the check, or re-run with --probe")
		return
	}
	cfg := a.hashConfig()
	matched, compared := 0, 0
	var bad *stored
	var badDiag blockhash.HashDiagnosis
	for i := range s.roots {
		r := &s.roots[i]
		d := blockhash.DiagnoseHashes(cfg, r.blockSize, r.tokens, r.extra, r.hashes)
		switch d.Verdict {
		case blockhash.HashNotComparable:
			continue
		case blockhash.HashMatch:
			matched++
		default:
			if bad == nil {
				bad, badDiag = r, d
			}
		}
		compared++
	}
	switch {
	case compared == 0:
		at("hashing", Warn, fmt.Sprintf("%d root stores arrived but none could be recomputed (not a full block, or tokens missing)", len(s.roots)), "")
	case bad == nil:
		at("hashing", Pass, fmt.Sprintf("%d of %d root stores reproduced with %s, seed %q, block size %d", matched, compared, cfg.Algorithm, cfg.Seed, cfg.BlockSize), "")
	default:
		reason, fix := hashExplanation(cfg, badDiag, bad.tokens, bad.extra, bad.hashes)
		if !bad.extraOK {
			reason += " (the event carries extra keys of a type kvtrack does not know)"
		}
		if s.storedLayout != nil && !s.storedLayout.Map && s.storedLayout.Fields == 6 && badDiag.Verdict == blockhash.HashSeedOrExtras {
			reason += "; this vLLM predates v0.10.2 and likely hashes with the irreproducible builtin hash()"
		}
		at("hashing", Fail, fmt.Sprintf("%d of %d root stores do not match: %s", compared-matched, compared, reason), fix)
	}
}

// hashExplanation says why published hashes differ from cfg's and gives
// the config line to change.
func hashExplanation(cfg blockhash.HashConfig, d blockhash.HashDiagnosis, tokens []uint32, extra [][]blockhash.ExtraKey, published []kvblock.Key) (reason, fix string) {
	switch d.Verdict {
	case blockhash.HashOtherAlgorithm:
		return fmt.Sprintf("they match algorithm %s, not the configured %s", d.Algorithm, cfg.Algorithm),
			fmt.Sprintf("set hash.algorithm: %s (the engines' --prefix-caching-hash-algo)", d.Algorithm)
	case blockhash.HashBlockSize:
		return fmt.Sprintf("the engine hashes blocks of %d tokens, the config says %d", d.BlockSize, cfg.BlockSize),
			fmt.Sprintf("set hash.blockSize: %d (the engines' --block-size)", d.BlockSize)
	case blockhash.HashSeedOrExtras:
		if seed, algo, ok := guessSeed(cfg, tokens, extra, published, commonSeeds); ok {
			fix = fmt.Sprintf("set hash.seed: %q (the engines' PYTHONHASHSEED)", seed)
			if algo != cfg.Algorithm {
				fix += fmt.Sprintf(" and hash.algorithm: %s", algo)
			}
			return fmt.Sprintf("no algorithm reproduces them with seed %q, but seed %q with %s does", cfg.Seed, seed, algo), fix
		}
		reason = fmt.Sprintf("no algorithm reproduces them with seed %q and block size %d: the engine's PYTHONHASHSEED differs, or is unset (vLLM then seeds each process randomly)", cfg.Seed, cfg.BlockSize)
		if extra != nil {
			reason += "; the check included the event's extra keys"
		}
		return reason, "set the same PYTHONHASHSEED on every vLLM pod and hash.seed to that string; if it cannot be set, use keyScheme: tokens"
	case blockhash.HashNotComparable:
		return "the event holds no full block to recompute", ""
	}
	return "", ""
}

// seedAgreement compares the first block's hash across streams that stored
// the same first-block tokens: different hashes mean different (or unset)
// seeds, whatever the configuration says.
func (a *analyzer) seedAgreement(c *checklist, streams []*stream) {
	type first struct {
		key  streamKey
		hash kvblock.Key
	}
	seen := map[string]first{}
	compared := 0
	for _, s := range streams {
		for _, r := range s.roots {
			if r.blockSize <= 0 || len(r.tokens) < r.blockSize || len(r.hashes) == 0 || r.extra != nil {
				continue
			}
			tk := fmt.Sprint(r.blockSize, r.tokens[:r.blockSize])
			f, ok := seen[tk]
			me := streamKey{s.Pod, s.Rank}
			if !ok {
				seen[tk] = first{me, r.hashes[0]}
				continue
			}
			if f.key == me {
				continue
			}
			compared++
			if f.hash != r.hashes[0] {
				c.add(Check{Name: "seed-agreement", Status: Fail,
					Reason: fmt.Sprintf("%s rank %d and %s rank %d publish different hashes for the same first block: their PYTHONHASHSEED differs or is unset (random per process)", f.key.pod, f.key.rank, s.Pod, s.Rank),
					Fix:    "set the same PYTHONHASHSEED on every vLLM pod and DP rank, and hash.seed to it"})
				return
			}
		}
	}
	if compared > 0 {
		c.add(Check{Name: "seed-agreement", Status: Pass, Reason: fmt.Sprintf("%d first blocks stored by more than one pod or rank hash alike", compared)})
	}
}

func (a *analyzer) unattributed(c *checklist) {
	if len(a.col.unattributed) == 0 {
		return
	}
	n := 0
	var topics []string
	for t, k := range a.col.unattributed {
		n += k
		topics = append(topics, fmt.Sprintf("%q", t))
	}
	slices.Sort(topics)
	c.add(Check{Name: "topic", Status: Fail,
		Reason: fmt.Sprintf("%d messages arrived with topics that name no pod (%s): in bind mode the router reads the pod from the topic kv@<pod-ip:port>@<model> and drops these", n, strings.Join(topics, ", ")),
		Fix:    `set each pod's kv-events "topic" to "kv@<pod-ip:port>@<model>" (the address of its OpenAI API, e.g. kv@$(POD_IP):8000@<model>)`})
}

// article is "a" or "an" for the layout description that follows it.
func article(s string) string {
	if s != "" && strings.ContainsRune("aeiou", rune(s[0])) {
		return "an"
	}
	return "a"
}

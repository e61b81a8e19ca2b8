package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// request is one simulated inference request. Its prompt and output tokens
// and their block keys are fixed by the workload, so every router sees the
// same stream.
type request struct {
	id int
	// arrival is the earliest arrival, in modelled seconds since the start:
	// a chat turn arrives only once the answer to the turn before it (after)
	// has been generated, since its prompt contains that answer.
	arrival float64
	// after is the id of the chat turn this one follows, -1 for none; next
	// the id of the turn that follows this one, -1 for none.
	after, next int
	prompt      []uint32 // shared between requests with the same prompt
	output      []uint32
	text        string // the prompt as text, for the character-hashing router
	salt        string // cache_salt
	// external requests reach pod extPod without the router under test.
	external bool
	extPod   int
	// keys are the vLLM block keys of every full block of prompt+output;
	// the first promptBlocks of them are the prompt's.
	keys         []kvblock.Key
	promptBlocks int
}

// seq returns tokens [from, to) of prompt+output.
func (r *request) seq(dst []uint32, from, to int) []uint32 {
	for i := from; i < to; i++ {
		if i < len(r.prompt) {
			dst = append(dst, r.prompt[i])
		} else {
			dst = append(dst, r.output[i-len(r.prompt)])
		}
	}
	return dst
}

// generate builds the request stream of cfg.
func generate(cfg Config, hasher *blockhash.Hasher) ([]*request, error) {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6b767472))
	randTokens := func(n int) []uint32 {
		t := make([]uint32, n)
		for i := range t {
			t[i] = 1000 + uint32(rng.IntN(150_000))
		}
		return t
	}
	reqs := make([]*request, cfg.Requests)
	now := 0.0
	switch cfg.Workload {
	case WorkloadSharedPrefix:
		type prompt struct {
			tokens [][]uint32 // per variant
			text   string
		}
		variants := max(cfg.Variants, 1)
		// The chat template's header before the messages; template variants
		// differ in a few of its tokens (a date, say), so in every block.
		var header []uint32
		if cfg.Variants > 1 && cfg.VariantKind == VariantTemplate {
			header = make([]uint32, templateHeaderTokens)
			for i := range header {
				header[i] = 128_000 + uint32(i)
			}
		}
		prompts := make([]prompt, cfg.Groups*cfg.PromptsPerGroup)
		for g := range cfg.Groups {
			system := randTokens(cfg.SystemTokens)
			for q := range cfg.PromptsPerGroup {
				msgs := append(append(make([]uint32, 0, cfg.SystemTokens+cfg.QuestionTokens), system...), randTokens(cfg.QuestionTokens)...)
				p := prompt{text: render(msgs, cfg.CharsPerToken)}
				for v := range variants {
					toks := msgs
					if header != nil {
						toks = append(append(make([]uint32, 0, len(header)+len(msgs)), header...), msgs...)
						toks[templateDateToken] += uint32(v)
					}
					p.tokens = append(p.tokens, toks)
				}
				prompts[g*cfg.PromptsPerGroup+q] = p
			}
		}
		for i := range reqs {
			now += rng.ExpFloat64() / cfg.Rate
			p := prompts[rng.IntN(len(prompts))]
			r := &request{id: i, arrival: now, after: -1, next: -1, prompt: p.tokens[0], text: p.text, output: randTokens(cfg.OutputTokens)}
			if variants > 1 {
				v := rng.IntN(variants)
				if cfg.VariantKind == VariantSalt {
					r.salt = fmt.Sprintf("tenant-%d", v)
				} else {
					r.prompt = p.tokens[v]
				}
			}
			reqs[i] = r
		}
	case WorkloadChat:
		type conversation struct {
			history []uint32
			turns   int
			last    *request
		}
		maxTurns := cfg.turnsPerConversation()
		convs := make([]conversation, cfg.Groups)
		open := make([]int, cfg.Groups) // conversations with turns left
		for c := range convs {
			convs[c].history = randTokens(cfg.SystemTokens)
			open[c] = c
		}
		for i := range reqs {
			now += rng.ExpFloat64() / cfg.Rate
			k := rng.IntN(len(open))
			c := &convs[open[k]]
			prompt := append(c.history[:len(c.history):len(c.history)], randTokens(cfg.QuestionTokens)...)
			out := randTokens(cfg.OutputTokens)
			reqs[i] = &request{id: i, arrival: now, after: -1, next: -1, prompt: prompt, text: render(prompt, cfg.CharsPerToken), output: out}
			if c.last != nil {
				reqs[i].after, c.last.next = c.last.id, i
			}
			c.last = reqs[i]
			c.history = append(prompt[:len(prompt):len(prompt)], out...)
			if c.turns++; c.turns == maxTurns {
				open = append(open[:k], open[k+1:]...)
			}
		}
	default:
		return nil, fmt.Errorf("simulate: unknown workload %q", cfg.Workload)
	}
	// Which requests bypass the router, drawn from a stream of their own so
	// that the workload is the same with or without them.
	ext := rand.New(rand.NewPCG(cfg.Seed, 0x657874))
	for _, r := range reqs {
		r.external = ext.Float64() < cfg.ExternalShare
		r.extPod = ext.IntN(cfg.Pods)
	}
	var buf []uint32
	for _, r := range reqs {
		buf = r.seq(buf[:0], 0, len(r.prompt)+len(r.output))
		extras := blockhash.RequestExtras{CacheSalt: r.salt}.PerBlock(len(buf) / cfg.BlockSize)
		keys, err := hasher.BlockKeys(make([]kvblock.Key, 0, len(buf)/cfg.BlockSize), buf, extras)
		if err != nil {
			return nil, fmt.Errorf("simulate: hashing request %d: %w", r.id, err)
		}
		r.keys = keys
		r.promptBlocks = len(r.prompt) / cfg.BlockSize
	}
	return reqs, nil
}

// templateHeaderTokens is the length of the chat template's header in
// template variants; templateDateToken the position of the token that
// differs between them.
const (
	templateHeaderTokens = 24
	templateDateToken    = 18
)

// render turns token IDs into text for routers that hash characters. Each
// token becomes a word whose length, fixed by the token ID, averages
// charsPerToken, so equal token prefixes are equal text prefixes.
func render(tokens []uint32, charsPerToken float64) string {
	var b strings.Builder
	b.Grow(int(charsPerToken+1) * len(tokens))
	for _, t := range tokens {
		h := uint64(t) * 0x9e3779b97f4a7c15
		u := float64(h>>40) / (1 << 24) // uniform in [0, 1)
		n := max(1, int(charsPerToken-2+4*u+0.5))
		for j := range n {
			b.WriteByte('a' + byte((h>>(5*j))%26))
		}
	}
	return b.String()
}

// percentile returns the p-th percentile (0..100) of sorted xs by linear
// interpolation.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	pos := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + (sorted[hi]-sorted[lo])*(pos-float64(lo))
}

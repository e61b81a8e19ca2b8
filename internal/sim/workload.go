package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

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
func generate(cfg Config, hasher *kvblock.Hasher) ([]*request, error) {
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
			tokens []uint32
			text   string
		}
		prompts := make([]prompt, cfg.Groups*cfg.PromptsPerGroup)
		for g := range cfg.Groups {
			system := randTokens(cfg.SystemTokens)
			for q := range cfg.PromptsPerGroup {
				toks := append(append(make([]uint32, 0, cfg.SystemTokens+cfg.QuestionTokens), system...), randTokens(cfg.QuestionTokens)...)
				prompts[g*cfg.PromptsPerGroup+q] = prompt{toks, render(toks, cfg.CharsPerToken)}
			}
		}
		for i := range reqs {
			now += rng.ExpFloat64() / cfg.Rate
			p := prompts[rng.IntN(len(prompts))]
			reqs[i] = &request{id: i, arrival: now, after: -1, next: -1, prompt: p.tokens, text: p.text, output: randTokens(cfg.OutputTokens)}
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
	var buf []uint32
	for _, r := range reqs {
		buf = r.seq(buf[:0], 0, len(r.prompt)+len(r.output))
		keys, err := hasher.BlockKeys(make([]kvblock.Key, 0, len(buf)/cfg.BlockSize), buf, nil)
		if err != nil {
			return nil, fmt.Errorf("simulate: hashing request %d: %w", r.id, err)
		}
		r.keys = keys
		r.promptBlocks = len(r.prompt) / cfg.BlockSize
	}
	return reqs, nil
}

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

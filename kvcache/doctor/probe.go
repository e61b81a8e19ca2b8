package doctor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/kvcache/openai"
)

// Probe is the outcome of one end-to-end request.
type Probe struct {
	Pod    string `json:"pod"`
	Kind   string `json:"kind"` // "completion" or "chat"
	Model  string `json:"model,omitempty"`
	Status Status `json:"status"`
	// Verdict is match, tokenizer, template, hashing, no-events,
	// request-failed or not-run.
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	Fix     string `json:"fix,omitempty"`
	// Tokens is kvtrack's token count for the prompt, EventTokens the
	// count of tokens the pod published for it (full blocks only).
	Tokens      int `json:"tokens"`
	EventTokens int `json:"eventTokens"`
	// Blocks is the number of published blocks compared.
	Blocks int `json:"blocks"`
	// FirstDifferingBlock and FirstDifferingToken locate the first
	// difference, -1 when there is none.
	FirstDifferingBlock int `json:"firstDifferingBlock"`
	FirstDifferingToken int `json:"firstDifferingToken"`
}

// probeText is the fixed prompt, repeated until it fills a few blocks. A
// per-run nonce goes first so the pod has none of its blocks cached and
// publishes the whole chain from the root.
const probeText = "The quick brown fox jumps over the lazy dog while the harbour bells ring twice. " +
	"Seven sailors count their copper coins, then argue about maps, tides and the price of rope. "

func runProbes(ctx context.Context, o *Options, col *collector) []Probe {
	// The probe computes keys only: the doctor follows events itself.
	off := false
	cfg := o.Config
	cfg.Events.Enabled = &off
	var kopts []kvcache.Option
	if o.Tokenizer != nil {
		kopts = append(kopts, kvcache.WithTokenizer(o.Tokenizer))
	}
	ix, err := kvcache.New(cfg, kopts...)
	var out []Probe
	if err != nil {
		for _, pod := range o.Pods {
			for _, kind := range []string{"completion", "chat"} {
				out = append(out, Probe{Pod: pod, Kind: kind, Status: Fail, Verdict: "not-run", FirstDifferingBlock: -1, FirstDifferingToken: -1,
					Reason: "kvtrack cannot compute keys with this configuration: " + err.Error(), Fix: "fix the configuration first (see the config check)"})
			}
		}
		return out
	}
	// A SUB socket receives only after its subscription reached the
	// publisher; give the connections a moment before causing events.
	select {
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
	}
	for _, pod := range o.Pods {
		p := prober{o: o, col: col, ix: ix, pod: pod}
		comp := p.run(ctx, "completion", nil)
		out = append(out, comp, p.run(ctx, "chat", &comp))
	}
	return out
}

type prober struct {
	o   *Options
	col *collector
	ix  *kvcache.Indexer
	pod string
}

func (p *prober) progress(format string, args ...any) {
	if p.o.Progress != nil {
		p.o.Progress("probe " + p.pod + ": " + fmt.Sprintf(format, args...))
	}
}

// run sends one probe and compares. completion is the completion probe's
// result when kind is "chat".
func (p *prober) run(ctx context.Context, kind string, completion *Probe) Probe {
	pr := Probe{Pod: p.pod, Kind: kind, FirstDifferingBlock: -1, FirstDifferingToken: -1, Status: Fail}
	model, err := p.model(ctx)
	if err != nil {
		pr.Verdict, pr.Reason = "request-failed", err.Error()
		pr.Fix = "check that the pod's OpenAI API listens at " + p.pod + ", or name the model with --model"
		return pr
	}
	pr.Model = model
	bs := p.o.Config.Hash.BlockSize
	prompt, ours, err := p.prompt(ctx, kind, model, bs)
	if err != nil {
		pr.Verdict, pr.Reason = "not-run", "kvtrack cannot tokenize the probe: "+err.Error()
		pr.Fix = "configure the tokenizer the router uses (tokenizer.path: the served model's tokenizer.json, or tokenizer.url: a vLLM server)"
		return pr
	}
	pr.Tokens = len(ours)
	p.progress("sending a %s request", kind)
	sent := time.Now()
	if err := p.send(ctx, kind, model, prompt); err != nil {
		pr.Verdict, pr.Reason = "request-failed", err.Error()
		pr.Fix = "check the pod's OpenAI API address and the model name (GET /v1/models lists what it serves)"
		return pr
	}
	p.progress("waiting up to %v for the %s request's BlockStored events", p.o.ProbeWait, kind)
	ch := p.waitChain(ctx, sent, ours, bs)
	if len(ch.hashes) == 0 {
		pr.Verdict = "no-events"
		pr.Reason = fmt.Sprintf("the %s request succeeded but no BlockStored from the root came from this pod within %v", kind, p.o.ProbeWait)
		pr.Fix = "make sure the pod publishes KV events to where the doctor listens (see the events check) and runs with prefix caching enabled"
		return pr
	}
	pr.EventTokens, pr.Blocks = len(ch.tokens), len(ch.hashes)
	p.compare(&pr, ch, ours, completion)
	return pr
}

// model returns the model to name in requests.
func (p *prober) model(ctx context.Context) (string, error) {
	if p.o.Model != "" {
		return p.o.Model, nil
	}
	if p.o.Config.Tokenizer.Model != "" {
		return p.o.Config.Tokenizer.Model, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.pod+"/v1/models", nil)
	if err != nil {
		return "", err
	}
	resp, err := p.o.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("listing the served models: %w", err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list); err != nil || resp.StatusCode != http.StatusOK || len(list.Data) == 0 {
		return "", fmt.Errorf("GET /v1/models answered %s without a model", resp.Status)
	}
	return list.Data[0].ID, nil
}

// prompt builds the probe prompt, long enough for at least two full blocks
// and a partial one, and returns kvtrack's tokens for it.
func (p *prober) prompt(ctx context.Context, kind, model string, bs int) (string, []uint32, error) {
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	text := "kvtrack doctor probe " + hex.EncodeToString(nonce[:]) + ". " + probeText
	for {
		req, err := p.request(kind, model, text)
		if err != nil {
			return "", nil, err
		}
		toks, err := p.ix.Tokens(ctx, req)
		if err != nil {
			return "", nil, err
		}
		if len(toks) > 2*bs || len(text) > 64<<10 {
			return text, toks, nil
		}
		text += probeText
	}
}

// probeBody is the body doctor sends for a probe, and the path it goes to.
func probeBody(kind, model, text string) (openai.API, string, []byte) {
	body := map[string]any{"model": model, "max_tokens": 1, "temperature": 0}
	if kind == "chat" {
		body["messages"] = []map[string]string{{"role": "user", "content": text}}
	} else {
		body["prompt"] = text
	}
	b, _ := json.Marshal(body) // strings and numbers always encode
	if kind == "chat" {
		return openai.ChatCompletions, "/v1/chat/completions", b
	}
	return openai.Completions, "/v1/completions", b
}

// request is what kvtrack derives from the probe's body: the mapper the
// scorer and the router use, so doctor checks the same keys they look up.
func (p *prober) request(kind, model, text string) (kvcache.Request, error) {
	api, _, b := probeBody(kind, model, text)
	return openai.Parse(api, b, openai.Limits{})
}

func (p *prober) send(ctx context.Context, kind, model, text string) error {
	_, path, b := probeBody(kind, model, text)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.pod+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.o.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s answered %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// chain is the run of blocks a pod stored for one request, root first.
type chain struct {
	hashes    []kvblock.Key
	tokens    []uint32
	blockSize int
	extra     [][]blockhash.ExtraKey
	extraOK   bool
}

// waitChain waits for the pod's stores after sent and assembles the chain
// the probe caused: the root store whose tokens share the longest prefix
// with kvtrack's (other traffic may interleave), extended by the stores
// that continue it.
func (p *prober) waitChain(ctx context.Context, sent time.Time, ours []uint32, bs int) chain {
	deadline := time.Now().Add(p.o.ProbeWait)
	have := make(map[uint32]int, len(ours))
	for _, t := range ours {
		have[t]++
	}
	var found time.Time
	var ch chain
	for {
		ch = pickChain(p.col.storesSince(p.pod, sent), ours)
		// Settle only on a chain that is likely the probe's own: one most
		// of whose tokens are kvtrack's, even if a tokenizer mismatch
		// shifts them. Another request's stores, arriving first on a busy
		// pod or machine, share few and must not end the wait.
		likely := len(ch.hashes) > 0 && 2*sharedTokens(ch.tokens, have) >= len(ch.tokens)
		if likely && found.IsZero() {
			found = time.Now()
		}
		complete := len(ch.hashes) > 0 && len(ch.hashes) >= len(ours)/bs
		settled := !found.IsZero() && time.Since(found) > 500*time.Millisecond
		if complete || settled || time.Now().After(deadline) || ctx.Err() != nil {
			return ch
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pickChain(stores []stored, ours []uint32) chain {
	// Score a root store by its common prefix with kvtrack's tokens, then
	// by how many of kvtrack's tokens it holds at all: a tokenizer that
	// adds or splits a token early shares no prefix with kvtrack's, but
	// still far more tokens than another request's prompt does.
	have := make(map[uint32]int, len(ours))
	for _, t := range ours {
		have[t]++
	}
	best, bestPrefix, bestShared := -1, -1, -1
	for i, st := range stores {
		if st.hasParent || len(st.tokens) == 0 || len(st.hashes) == 0 {
			continue
		}
		n, shared := commonPrefix(st.tokens, ours), sharedTokens(st.tokens, have)
		if n > bestPrefix || (n == bestPrefix && shared > bestShared) {
			best, bestPrefix, bestShared = i, n, shared
		}
	}
	if best < 0 {
		return chain{}
	}
	root := stores[best]
	ch := chain{blockSize: root.blockSize, extraOK: true}
	withExtra := false
	add := func(st stored) {
		ch.hashes = append(ch.hashes, st.hashes...)
		ch.tokens = append(ch.tokens, st.tokens...)
		ch.extraOK = ch.extraOK && st.extraOK
		if st.extra != nil {
			withExtra = true
			ch.extra = append(ch.extra, st.extra...)
		} else {
			ch.extra = append(ch.extra, make([][]blockhash.ExtraKey, len(st.hashes))...)
		}
	}
	add(root)
	for grew := true; grew; {
		grew = false
		last := ch.hashes[len(ch.hashes)-1]
		for _, st := range stores[best+1:] {
			if st.hasParent && st.parent == last && len(st.hashes) > 0 {
				add(st)
				grew = true
				break
			}
		}
	}
	if !withExtra {
		ch.extra = nil
	}
	return ch
}

// sharedTokens counts the tokens of a that have holds, as a multiset.
func sharedTokens(a []uint32, have map[uint32]int) int {
	used := make(map[uint32]int, len(have))
	n := 0
	for _, t := range a {
		if used[t] < have[t] {
			used[t]++
			n++
		}
	}
	return n
}

func commonPrefix(a, b []uint32) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// compare classifies the probe: hashing when the pod's own tokens do not
// hash to what it published under the configuration; otherwise tokenizer
// or template when kvtrack's tokens differ from the pod's. Under keyScheme
// tokens the keys come from the events' token IDs, so only the tokens are
// compared: the pod's own hashes do not matter.
func (p *prober) compare(pr *Probe, ch chain, ours []uint32, completion *Probe) {
	cfg := p.o.Config.Hash
	hcfg := blockhash.HashConfig{Algorithm: blockhash.Algorithm(cfg.Algorithm), Seed: cfg.Seed, BlockSize: cfg.BlockSize}
	d := blockhash.HashDiagnosis{Verdict: blockhash.HashMatch}
	if !usesTokenKeys(p.o.Config) {
		d = blockhash.DiagnoseHashes(hcfg, ch.blockSize, ch.tokens, ch.extra, ch.hashes)
	}
	if d.Verdict != blockhash.HashMatch {
		pr.Verdict = "hashing"
		pr.FirstDifferingBlock = max(d.FirstMismatch, 0)
		pr.Reason, pr.Fix = hashExplanation(hcfg, d, ch.tokens, ch.extra, ch.hashes)
		pr.Reason = "the pod's hashes of its own tokens differ from kvtrack's: " + pr.Reason
		if i := commonPrefix(ch.tokens, ours); i < len(ch.tokens) {
			pr.FirstDifferingToken = i
			pr.Reason += fmt.Sprintf("; the tokens differ too, from token %d (block %d): check the tokenizer once the hashes match", i, i/max(ch.blockSize, 1))
		}
		return
	}
	i := commonPrefix(ch.tokens, ours)
	if i == len(ch.tokens) {
		pr.Status, pr.Verdict = Pass, "match"
		pr.Reason = fmt.Sprintf("the %d blocks the pod stored for the %s equal the keys kvtrack computes for it", len(ch.hashes), pr.Kind)
		return
	}
	pr.FirstDifferingToken, pr.FirstDifferingBlock = i, i/ch.blockSize
	ourTok := "nothing (kvtrack's tokens end there)"
	if i < len(ours) {
		ourTok = fmt.Sprint(ours[i])
	}
	where := fmt.Sprintf("token %d (block %d): the pod has %d, kvtrack %s", i, i/ch.blockSize, ch.tokens[i], ourTok)
	switch {
	case pr.Kind == "chat" && completion != nil && completion.Verdict == "match":
		pr.Verdict = "template"
		pr.Reason = "completions tokenize alike, but the chat prompt differs at " + where + ": kvtrack renders the chat template differently from the pod"
		pr.Fix = "give kvtrack the pod's chat template: tokenizer.path must be the model directory the pod serves (tokenizer_config.json or chat_template.jinja, and the same --chat-template if the pod sets one), or set tokenizer.url to a vLLM server so it renders chat"
	default:
		pr.Verdict = "tokenizer"
		pr.Reason = "kvtrack's tokens for the " + pr.Kind + " prompt differ from the pod's at " + where
		pr.Fix = "point tokenizer.path at the served model's tokenizer.json (or set tokenizer.url to a vLLM server serving it)"
	}
}

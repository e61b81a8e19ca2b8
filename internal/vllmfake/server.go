package vllmfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/tokenization"
)

// Tokenizer is what a Server needs to turn prompts into token IDs as vLLM
// does; *tokenization.Local is one.
type Tokenizer interface {
	Encode(text string, addSpecialTokens bool) ([]uint32, error)
	EncodeChat(req *tokenization.ChatRequest) ([]uint32, error)
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// Name is sent back in the PodHeader of every response, so tests can
	// tell which pod served a request.
	Name      string
	Tokenizer Tokenizer
	Hasher    *kvblock.Hasher
	// Blocks is the KV-cache size in blocks of Hasher's block size.
	Blocks int
	// OutputTokens is the number of tokens every request generates.
	// Default 8.
	OutputTokens int
	// Publisher, if set, receives the pool's KV events after each request.
	Publisher *Publisher
}

// PodHeader is the response header naming the Server that answered.
const PodHeader = "X-Vllmfake-Pod"

// Server is a vLLM-like OpenAI server for tests: /v1/completions and
// /v1/chat/completions (streamed or not) over a BlockPool, publishing the
// pool's KV events in vLLM's format. Requests run one at a time, each to
// completion, and report the prefix-cache hit in
// usage.prompt_tokens_details.cached_tokens as vLLM does. It is safe for
// concurrent use.
type Server struct {
	cfg ServerConfig

	mu   sync.Mutex // guards pool and the order of published batches
	pool *BlockPool
}

// NewServer returns a Server with an empty cache.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Tokenizer == nil || cfg.Hasher == nil || cfg.Blocks <= 0 {
		return nil, errors.New("vllmfake: server needs a tokenizer, a hasher and a positive block count")
	}
	if cfg.OutputTokens <= 0 {
		cfg.OutputTokens = 8
	}
	return &Server{cfg: cfg, pool: NewBlockPool(cfg.Blocks)}, nil
}

type openAIRequest struct {
	Model    string          `json:"model"`
	Prompt   json.RawMessage `json:"prompt"`
	Messages json.RawMessage `json:"messages"`
	Stream   bool            `json:"stream"`
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(PodHeader, s.cfg.Name)
	chat := r.URL.Path == "/v1/chat/completions"
	if r.Method != http.MethodPost || (!chat && r.URL.Path != "/v1/completions") {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var req openAIRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	prompt, err := s.tokenize(&req, chat)
	if err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	cached, err := s.run(prompt)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	usage := map[string]any{
		"prompt_tokens": len(prompt), "completion_tokens": s.cfg.OutputTokens,
		"prompt_tokens_details": map[string]int{"cached_tokens": cached},
	}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"model": req.Model, "choices": []map[string]any{{"index": 0, "text": s.text(), "finish_reason": "length"}},
			"usage": usage,
		})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl, _ := w.(http.Flusher)
	for i := range s.cfg.OutputTokens {
		chunk, _ := json.Marshal(map[string]any{"model": req.Model, "choices": []map[string]any{{"index": 0, "text": fmt.Sprintf(" t%d", i)}}})
		fmt.Fprintf(w, "data: %s\n\n", chunk)
		if fl != nil {
			fl.Flush()
		}
	}
	last, _ := json.Marshal(map[string]any{"model": req.Model, "choices": []any{}, "usage": usage})
	fmt.Fprintf(w, "data: %s\n\ndata: [DONE]\n\n", last)
}

func (s *Server) text() string {
	var b strings.Builder
	for i := range s.cfg.OutputTokens {
		fmt.Fprintf(&b, " t%d", i)
	}
	return b.String()
}

// tokenize does what vLLM does: a completion prompt is tokenized with
// special tokens, chat messages are rendered with the chat template and a
// generation prompt and tokenized without; token IDs are used as given.
func (s *Server) tokenize(req *openAIRequest, chat bool) ([]uint32, error) {
	if chat {
		return s.cfg.Tokenizer.EncodeChat(&tokenization.ChatRequest{Messages: req.Messages, AddGenerationPrompt: true})
	}
	var text string
	if err := json.Unmarshal(req.Prompt, &text); err == nil {
		return s.cfg.Tokenizer.Encode(text, true)
	}
	var ids []uint32
	if err := json.Unmarshal(req.Prompt, &ids); err != nil {
		return nil, errors.New("prompt must be a string or an array of token IDs")
	}
	return ids, nil
}

// run serves one request to completion in the cache and publishes what
// changed; it returns the number of prompt tokens found cached.
func (s *Server) run(prompt []uint32) (int, error) {
	bs := s.cfg.Hasher.Config().BlockSize
	seq := append([]uint32(nil), prompt...)
	for i := range s.cfg.OutputTokens {
		seq = append(seq, uint32(1000+i))
	}
	keys, err := s.cfg.Hasher.BlockKeys(nil, seq, nil)
	if err != nil {
		return 0, err
	}
	promptBlocks := len(prompt) / bs
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.pool.Allocate(keys[:promptBlocks], max(len(prompt)-1, 0)/bs, (len(seq)+bs-1)/bs)
	if err != nil {
		return 0, err
	}
	cache := func(from, to int) {
		if from >= to {
			return
		}
		var parent kvblock.Key
		if from > 0 {
			parent = keys[from-1]
		}
		s.pool.Cache(a, keys[from:to], parent, from > 0, seq[from*bs:to*bs], bs)
	}
	cache(a.Hit, promptBlocks)     // prefill
	cache(promptBlocks, len(keys)) // decode
	s.pool.Release(a)
	if events := s.pool.TakeEvents(); s.cfg.Publisher != nil && len(events) > 0 {
		if _, err := s.cfg.Publisher.Publish(float64(time.Now().UnixNano())/1e9, events); err != nil {
			return 0, err
		}
	}
	return a.Hit * bs, nil
}

package vllmfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
	"github.com/kvtrack/kvtrack/tokenization"
)

// Tokenizer renders and tokenizes prompts for a Server;
// *tokenization.Local satisfies it.
type Tokenizer interface {
	Encode(text string, addSpecialTokens bool) ([]uint32, error)
	EncodeChat(req *tokenization.ChatRequest) ([]uint32, error)
}

// ServerConfig configures a Server: the engine flags that decide which
// hashes it publishes, and where it publishes them.
type ServerConfig struct {
	// Model is the served model name; requests naming another get 404.
	Model string
	// Hash is the engine's --prefix-caching-hash-algo, PYTHONHASHSEED and
	// --block-size.
	Hash blockhash.HashConfig
	// Tokenizer tokenizes completion prompts (with special tokens) and
	// renders chat requests with its template (add_generation_prompt on,
	// vLLM's default).
	Tokenizer Tokenizer
	// Publisher sends the KV events; nil runs with events disabled.
	Publisher *Publisher
	// Blocks is the KV-cache capacity in blocks. Default 4096.
	Blocks int
	// Name is sent back in the PodHeader of every response, so that a test
	// behind a router can tell which pod answered.
	Name string
	// OutputTokens is the number of tokens each answer has (" ok" each;
	// their KV blocks are not cached). Default 1.
	OutputTokens int
}

// PodHeader is the response header carrying ServerConfig.Name.
const PodHeader = "X-Vllmfake-Pod"

// Server is a vLLM engine without a model: its OpenAI endpoints
// (/v1/completions, /v1/chat/completions, /v1/models) tokenize the prompt
// (or take its token IDs), prefill it through a BlockPool and publish the
// KV events vLLM would, then answer with OutputTokens fixed tokens, as
// server-sent events when the request asks to stream. The usage reports
// the prefix-cache hit in prompt_tokens_details.cached_tokens, as vLLM
// does. It is safe for concurrent use.
type Server struct {
	cfg ServerConfig
	h   *blockhash.Hasher

	mu   sync.Mutex // guards pool
	pool *BlockPool
}

// NewServer validates cfg and returns a Server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Tokenizer == nil {
		return nil, errors.New("vllmfake: server needs a tokenizer")
	}
	h, err := blockhash.NewHasher(cfg.Hash)
	if err != nil {
		return nil, fmt.Errorf("vllmfake: server: %w", err)
	}
	if cfg.Blocks <= 0 {
		cfg.Blocks = 4096
	}
	if cfg.OutputTokens <= 0 {
		cfg.OutputTokens = 1
	}
	return &Server{cfg: cfg, h: h, pool: NewBlockPool(cfg.Blocks)}, nil
}

// Prefill runs a prompt of tokens through the prefix cache as a request
// that generates one token, and publishes the events it causes. It
// returns the number of leading blocks that were already cached.
func (s *Server) Prefill(tokens []uint32) (hit int, err error) {
	keys, err := s.h.BlockKeys(nil, tokens, nil)
	if err != nil {
		return 0, fmt.Errorf("vllmfake: hashing the prompt: %w", err)
	}
	bs := s.h.Config().BlockSize
	s.mu.Lock()
	a, err := s.pool.Allocate(keys, (len(tokens)-1)/bs, (len(tokens)+1+bs-1)/bs)
	if err != nil {
		s.mu.Unlock()
		return 0, err
	}
	var parent kvblock.Key
	if a.Hit > 0 {
		parent = keys[a.Hit-1]
	}
	s.pool.Cache(a, keys[a.Hit:], parent, a.Hit > 0, tokens[a.Hit*bs:len(keys)*bs], bs)
	s.pool.Release(a)
	events := s.pool.TakeEvents()
	if s.cfg.Publisher != nil && len(events) > 0 {
		ts := float64(time.Now().UnixNano()) / 1e9
		_, err = s.cfg.Publisher.Publish(ts, events)
	}
	s.mu.Unlock()
	return a.Hit, err
}

// Version is what the fake answers at GET /version, as vLLM's server does:
// the release whose event layout Publisher sends by default.
const Version = "0.23.0"

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Name != "" {
		w.Header().Set(PodHeader, s.cfg.Name)
	}
	if r.URL.Path == "/health" { // vLLM's liveness check: 200, empty body
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.URL.Path == "/version" { // vLLM's OpenAI server answers this
		writeJSON(w, http.StatusOK, map[string]string{"version": Version})
		return
	}
	if r.URL.Path == "/v1/models" {
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []map[string]string{{"id": s.cfg.Model, "object": "model"}}})
		return
	}
	chat := r.URL.Path == "/v1/chat/completions"
	if !chat && r.URL.Path != "/v1/completions" {
		writeJSON(w, http.StatusNotFound, errorBody("Not Found"))
		return
	}
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody("Method Not Allowed"))
		return
	}
	var req struct {
		Model    string          `json:"model"`
		Prompt   json.RawMessage `json:"prompt"`
		Messages json.RawMessage `json:"messages"`
		Stream   bool            `json:"stream"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	if req.Model != s.cfg.Model {
		writeJSON(w, http.StatusNotFound, errorBody(fmt.Sprintf("The model `%s` does not exist.", req.Model)))
		return
	}
	var tokens []uint32
	var err error
	var text string
	switch {
	case chat:
		tokens, err = s.cfg.Tokenizer.EncodeChat(&tokenization.ChatRequest{Messages: req.Messages, AddGenerationPrompt: true})
	case json.Unmarshal(req.Prompt, &text) == nil:
		tokens, err = s.cfg.Tokenizer.Encode(text, true)
	case json.Unmarshal(req.Prompt, &tokens) != nil:
		err = errors.New("prompt must be a string or an array of token IDs")
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	hit, err := s.Prefill(tokens)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody(err.Error()))
		return
	}
	n := s.cfg.OutputTokens
	usage := map[string]any{"prompt_tokens": len(tokens), "completion_tokens": n, "total_tokens": len(tokens) + n,
		"prompt_tokens_details": map[string]int{"cached_tokens": hit * s.h.Config().BlockSize}}
	object, piece := "text_completion", func(text string) map[string]any { return map[string]any{"index": 0, "text": text} }
	if chat {
		object, piece = "chat.completion", func(text string) map[string]any {
			return map[string]any{"index": 0, "message": map[string]string{"role": "assistant", "content": text}}
		}
	}
	if req.Stream {
		w.Header().Set("Content-Type", "text/event-stream")
		fl, _ := w.(http.Flusher)
		for range n {
			chunk, _ := json.Marshal(map[string]any{"object": object + ".chunk", "model": s.cfg.Model, "choices": []any{piece("ok")}})
			fmt.Fprintf(w, "data: %s\n\n", chunk)
			if fl != nil {
				fl.Flush()
			}
		}
		last, _ := json.Marshal(map[string]any{"object": object + ".chunk", "model": s.cfg.Model, "choices": []any{}, "usage": usage})
		fmt.Fprintf(w, "data: %s\n\ndata: [DONE]\n\n", last)
		return
	}
	choice := piece(strings.TrimPrefix(strings.Repeat(" ok", n), " "))
	choice["finish_reason"] = "length"
	writeJSON(w, http.StatusOK, map[string]any{"object": object, "model": s.cfg.Model, "usage": usage, "choices": []any{choice}})
}

func errorBody(msg string) map[string]any {
	return map[string]any{"error": map[string]any{"message": msg, "type": "BadRequestError"}}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

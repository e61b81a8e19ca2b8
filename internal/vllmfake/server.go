package vllmfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

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
	Hash kvblock.HashConfig
	// Tokenizer tokenizes completion prompts (with special tokens) and
	// renders chat requests with its template (add_generation_prompt on,
	// vLLM's default).
	Tokenizer Tokenizer
	// Publisher sends the KV events; nil runs with events disabled.
	Publisher *Publisher
	// Blocks is the KV-cache capacity in blocks. Default 4096.
	Blocks int
}

// Server is a vLLM engine without a model: its OpenAI endpoints
// (/v1/completions, /v1/chat/completions, /v1/models) tokenize the prompt,
// prefill it through a BlockPool and publish the KV events vLLM would, then
// answer with one fixed token. It is safe for concurrent use.
type Server struct {
	cfg ServerConfig
	h   *kvblock.Hasher

	mu   sync.Mutex // guards pool
	pool *BlockPool
}

// NewServer validates cfg and returns a Server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Tokenizer == nil {
		return nil, errors.New("vllmfake: server needs a tokenizer")
	}
	h, err := kvblock.NewHasher(cfg.Hash)
	if err != nil {
		return nil, fmt.Errorf("vllmfake: server: %w", err)
	}
	if cfg.Blocks <= 0 {
		cfg.Blocks = 4096
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

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
		Prompt   string          `json:"prompt"`
		Messages json.RawMessage `json:"messages"`
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
	if chat {
		tokens, err = s.cfg.Tokenizer.EncodeChat(&tokenization.ChatRequest{Messages: req.Messages, AddGenerationPrompt: true})
	} else {
		tokens, err = s.cfg.Tokenizer.Encode(req.Prompt, true)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	if _, err := s.Prefill(tokens); err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody(err.Error()))
		return
	}
	usage := map[string]int{"prompt_tokens": len(tokens), "completion_tokens": 1, "total_tokens": len(tokens) + 1}
	if chat {
		writeJSON(w, http.StatusOK, map[string]any{"object": "chat.completion", "model": s.cfg.Model, "usage": usage,
			"choices": []any{map[string]any{"index": 0, "message": map[string]string{"role": "assistant", "content": "ok"}, "finish_reason": "length"}}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "text_completion", "model": s.cfg.Model, "usage": usage,
		"choices": []any{map[string]any{"index": 0, "text": "ok", "finish_reason": "length"}}})
}

func errorBody(msg string) map[string]any {
	return map[string]any{"error": map[string]any{"message": msg, "type": "BadRequestError"}}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

package tokenization

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
)

// Remote tokenizes through a vLLM server's /tokenize endpoint, for models
// the in-process tokenizer cannot serve (a template construct the renderer
// refuses, tokenizer_mode=mistral, components hf does not implement). It is
// safe for concurrent use.
type Remote struct {
	baseURL string
	model   string
	client  *http.Client
}

// NewRemote returns a tokenizer for model served at baseURL (for example
// http://vllm:8000). A nil client means one with a ten-second timeout.
func NewRemote(baseURL, model string, client *http.Client) (*Remote, error) {
	if !strings.HasPrefix(baseURL, "http://") && !strings.HasPrefix(baseURL, "https://") {
		return nil, errorf("remote tokenizer: base URL %q is not http(s)", baseURL)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Remote{baseURL: strings.TrimRight(baseURL, "/"), model: model, client: client}, nil
}

// Encode implements Tokenizer.
func (r *Remote) Encode(text string, addSpecialTokens bool) ([]uint32, error) {
	return r.EncodeContext(context.Background(), text, addSpecialTokens)
}

// EncodeContext is Encode with a context for the HTTP request.
func (r *Remote) EncodeContext(ctx context.Context, text string, addSpecialTokens bool) ([]uint32, error) {
	return r.EncodeFor(ctx, "", text, addSpecialTokens)
}

// EncodeFor implements ModelTokenizer: it tokenizes text as model does (the
// Remote's own model when model is empty). ctx bounds the HTTP request.
func (r *Remote) EncodeFor(ctx context.Context, model, text string, addSpecialTokens bool) ([]uint32, error) {
	body := struct {
		Model            string `json:"model,omitempty"`
		Prompt           string `json:"prompt"`
		AddSpecialTokens bool   `json:"add_special_tokens"`
	}{r.modelOr(model), text, addSpecialTokens}
	return r.post(ctx, body)
}

func (r *Remote) modelOr(model string) string {
	if model == "" {
		return r.model
	}
	return model
}

// EncodeChat implements ChatTokenizer.
func (r *Remote) EncodeChat(req *ChatRequest) ([]uint32, error) {
	return r.EncodeChatContext(context.Background(), req)
}

// EncodeChatContext is EncodeChat with a context for the HTTP request.
func (r *Remote) EncodeChatContext(ctx context.Context, req *ChatRequest) ([]uint32, error) {
	return r.EncodeChatFor(ctx, "", req)
}

// EncodeChatFor implements ModelTokenizer: it renders and tokenizes req as
// model does (the Remote's own model when model is empty). ctx bounds the
// HTTP request.
func (r *Remote) EncodeChatFor(ctx context.Context, model string, req *ChatRequest) ([]uint32, error) {
	// Every field is sent: vLLM's defaults differ from Go's zero values
	// (add_generation_prompt defaults to true there).
	body := struct {
		Model                string          `json:"model,omitempty"`
		Messages             json.RawMessage `json:"messages"`
		Tools                json.RawMessage `json:"tools,omitempty"`
		AddGenerationPrompt  bool            `json:"add_generation_prompt"`
		ContinueFinalMessage bool            `json:"continue_final_message"`
		AddSpecialTokens     bool            `json:"add_special_tokens"`
		ChatTemplate         string          `json:"chat_template,omitempty"`
		ChatTemplateKwargs   json.RawMessage `json:"chat_template_kwargs,omitempty"`
	}{r.modelOr(model), req.Messages, req.Tools, req.AddGenerationPrompt, req.ContinueFinalMessage,
		req.AddSpecialTokens, req.ChatTemplate, req.ChatTemplateKwargs}
	if len(req.Documents) > 0 && string(req.Documents) != "null" {
		return nil, errorf("remote tokenizer: vLLM's /tokenize takes no documents")
	}
	return r.post(ctx, body)
}

func (r *Remote) post(ctx context.Context, body any) ([]uint32, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, errorf("remote tokenizer: %w", err)
	}
	url := r.baseURL + "/tokenize"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return nil, errorf("remote tokenizer: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, errorf("remote tokenizer: %w", err)
	}
	defer resp.Body.Close()
	payload, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, errorf("remote tokenizer: POST %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
			Error   *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		msg := strings.TrimSpace(string(payload))
		if json.Unmarshal(payload, &e) == nil {
			if e.Message != "" {
				msg = e.Message
			} else if e.Error != nil && e.Error.Message != "" {
				msg = e.Error.Message
			}
		}
		return nil, errorf("remote tokenizer: POST %s: %s: %s", url, resp.Status, msg)
	}
	var out struct {
		Tokens *[]uint32 `json:"tokens"`
	}
	if err := json.Unmarshal(payload, &out); err != nil {
		return nil, errorf("remote tokenizer: POST %s: bad response: %w", url, err)
	}
	if out.Tokens == nil {
		return nil, errorf("remote tokenizer: POST %s: %w", url, errors.New(`response has no "tokens"`))
	}
	return *out.Tokens, nil
}

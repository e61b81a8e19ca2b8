// Package openai maps an OpenAI-compatible request body (vLLM's
// /v1/completions and /v1/chat/completions) to the kvcache.Request whose
// block keys are the ones vLLM computes when it serves that body. It is the
// one mapping the EPP scorer, the router and doctor share.
//
// Every default is vLLM's own, from its protocol classes
// (vllm/entrypoints/openai/protocol.py, ChatCompletionRequest and
// CompletionRequest):
//
//   - chat: add_generation_prompt defaults to true, add_special_tokens to
//     false; messages (content parts, tool calls and all), tools,
//     documents, chat_template and chat_template_kwargs reach the chat
//     template as sent, except tools, which vLLM re-serializes from its
//     pydantic model (see normalizeTools);
//   - completions: add_special_tokens defaults to true; a prompt that is a
//     list of strings or a list of token-ID lists is a batch, served by
//     vLLM as one request per prompt (kvcache.Request.Prompts);
//   - cache_salt is kept; prompt_embeds cannot be hashed here (ErrNotScorable);
//   - the model is kept as sent: the Indexer keys a request whose model is
//     a LoRA adapter with the adapter's name.
package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/kvtrack/kvtrack/kvcache"
)

// API is the endpoint a body was sent to.
type API uint8

// The endpoints whose prompts kvtrack scores.
const (
	Completions     API = iota + 1 // /v1/completions
	ChatCompletions                // /v1/chat/completions
)

// APIFor returns the API served at path, ok false for any other path.
func APIFor(path string) (API, bool) {
	switch path {
	case "/v1/completions":
		return Completions, true
	case "/v1/chat/completions":
		return ChatCompletions, true
	}
	return 0, false
}

// Limits bound what one request may cost to parse, tokenize and hash. A
// zero field means no limit.
type Limits struct {
	// MaxMessages bounds a chat's messages.
	MaxMessages int
	// MaxPromptChars bounds the characters of the prompt before
	// tokenization: a completion's prompt strings (summed over a batch), or
	// a chat's messages, tools and documents as JSON (an upper bound of the
	// text the template renders). It is checked before any template runs,
	// so it bounds the tokenizer's work.
	MaxPromptChars int
	// MaxPromptTokens bounds the token IDs a request sends (summed over a
	// batch). They are counted before they are decoded.
	MaxPromptTokens int
	// MaxBatchPrompts bounds the prompts of a batch.
	MaxBatchPrompts int
}

// ErrInvalid wraps every error about a body vLLM would reject as malformed:
// not JSON, or a field of the wrong type. Servers answer 400.
var ErrInvalid = errors.New("invalid request")

// ErrNotScorable wraps the error for a well-formed body whose prompt kvtrack
// cannot key (prompt_embeds, an empty prompt). Route it on load alone.
var ErrNotScorable = errors.New("request has no prompt kvtrack can score")

// LimitError is a request over one of the Limits. Servers answer 413.
type LimitError struct {
	// Field is the body field at fault: "messages", "prompt", ...
	Field string
	// What is the quantity limited: "messages", "characters", "tokens",
	// "prompts".
	What       string
	Got, Limit int
	// AtLeast says Got is a lower bound: counting stopped once the
	// limit was passed, so that an oversize request costs no more than
	// the limit's worth of scanning.
	AtLeast bool
}

func (e *LimitError) Error() string {
	if e.AtLeast {
		return fmt.Sprintf("%s: more than %d %s is over the limit", e.Field, e.Limit, e.What)
	}
	return fmt.Sprintf("%s: %d %s is over the limit of %d", e.Field, e.Got, e.What, e.Limit)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func over(field, what string, got, limit int) error {
	if limit > 0 && got > limit {
		return &LimitError{Field: field, What: what, Got: got, Limit: limit}
	}
	return nil
}

// overCounted is over for a count that stopped at limit+1 (arrayShape's
// upTo): such a count says only that the limit was passed.
func overCounted(field, what string, got, limit int) error {
	err := over(field, what, got, limit)
	if le, ok := err.(*LimitError); ok && got == limit+1 {
		le.AtLeast = true
	}
	return err
}

// Parse maps body, sent to api, to the kvcache.Request vLLM will hash (Pods
// left empty). Errors wrap ErrInvalid, ErrNotScorable or are a *LimitError.
func Parse(api API, body []byte, lim Limits) (kvcache.Request, error) {
	switch api {
	case Completions:
		return parseCompletion(body, lim)
	case ChatCompletions:
		return parseChat(body, lim)
	}
	return kvcache.Request{}, fmt.Errorf("openai: unknown API %d", api)
}

// common are the fields both APIs share.
type common struct {
	Model            *string         `json:"model"`
	CacheSalt        json.RawMessage `json:"cache_salt"`
	AddSpecialTokens *bool           `json:"add_special_tokens"`
}

func (c *common) apply(req *kvcache.Request) error {
	if c.Model != nil {
		req.Model = *c.Model
	}
	if isNull(c.CacheSalt) {
		return nil
	}
	// vLLM rejects a cache_salt that is not a non-empty string.
	if err := json.Unmarshal(c.CacheSalt, &req.CacheSalt); err != nil || req.CacheSalt == "" {
		return invalid("cache_salt must be a non-empty string")
	}
	return nil
}

type completionBody struct {
	common
	Prompt       json.RawMessage `json:"prompt"`
	PromptEmbeds json.RawMessage `json:"prompt_embeds"`
}

func parseCompletion(body []byte, lim Limits) (kvcache.Request, error) {
	var b completionBody
	var req kvcache.Request
	fields := topMembers(body)
	if err := promptListOver(bytes.TrimSpace(fields["prompt"]), lim); err != nil {
		return req, err
	}
	if err := decodeBody(body, fields, &b); err != nil {
		return req, err
	}
	if err := b.apply(&req); err != nil {
		return req, err
	}
	if b.AddSpecialTokens != nil {
		req.NoSpecialTokens = !*b.AddSpecialTokens
	}
	if !isNull(b.PromptEmbeds) {
		// vLLM hashes each block's embeddings (torch tensors, serialized
		// with torch.save) into its extra keys; kvtrack cannot decode them.
		return req, fmt.Errorf("%w: prompt_embeds", ErrNotScorable)
	}
	p := bytes.TrimSpace(b.Prompt)
	switch {
	case isNull(p):
		return req, invalid("prompt is required")
	case p[0] == '"':
		if err := json.Unmarshal(p, &req.Prompt); err != nil {
			return req, invalid("prompt: %v", err)
		}
		if err := over("prompt", "characters", utf8.RuneCountInString(req.Prompt), lim.MaxPromptChars); err != nil {
			return req, err
		}
		if req.Prompt == "" {
			return req, fmt.Errorf("%w: empty prompt", ErrNotScorable)
		}
		return req, nil
	case p[0] == '[':
		return req, parsePromptList(p, lim, &req)
	}
	return req, invalid("prompt must be a string, a list of strings, a list of token IDs or a list of token-ID lists")
}

// promptListOver reports a list prompt over its limits (token IDs over
// MaxPromptTokens, a batch over MaxBatchPrompts or its token-ID lists over
// MaxPromptTokens), counting no further than the limit: it runs before the
// body is validated, so that a 15 MiB list of token IDs is refused after
// scanning a limit's worth of it, not after two passes over all of it.
func promptListOver(p []byte, lim Limits) error {
	if len(p) == 0 || p[0] != '[' {
		return nil
	}
	_, first := arrayShape(p, 1) // the first element says what is counted
	switch first {
	case 0:
		return nil
	case '"', '[':
		n, _ := arrayShape(p, lim.MaxBatchPrompts)
		if err := overCounted("prompt", "prompts", n, lim.MaxBatchPrompts); err != nil {
			return err
		}
		if first == '[' {
			return overCounted("prompt", "tokens", countNested(p, lim.MaxPromptTokens), lim.MaxPromptTokens)
		}
		return nil
	}
	n, _ := arrayShape(p, lim.MaxPromptTokens)
	return overCounted("prompt", "tokens", n, lim.MaxPromptTokens)
}

// parsePromptList reads a list prompt, already within its limits
// (promptListOver): token IDs (one prompt), strings (a batch) or token-ID
// lists (a batch).
func parsePromptList(p []byte, lim Limits, req *kvcache.Request) error {
	n, first := arrayShape(p, 1) // its shape only: promptListOver counted it
	if n == 0 {
		return invalid("prompt is an empty list")
	}
	switch first {
	case '"':
		var texts []string
		if err := json.Unmarshal(p, &texts); err != nil {
			return invalid("prompt: a list must hold only strings, only token IDs or only token-ID lists: %v", err)
		}
		chars := 0
		for _, t := range texts {
			chars += utf8.RuneCountInString(t)
		}
		if err := over("prompt", "characters", chars, lim.MaxPromptChars); err != nil {
			return err
		}
		req.Prompts = make([]kvcache.BatchPrompt, len(texts))
		for i, t := range texts {
			req.Prompts[i].Text = t
		}
		return nil
	case '[':
		var lists [][]uint32
		if err := json.Unmarshal(p, &lists); err != nil {
			return invalid("prompt: token IDs must be integers from 0 to 2^32-1: %v", err)
		}
		req.Prompts = make([]kvcache.BatchPrompt, len(lists))
		for i, l := range lists {
			if l == nil {
				l = []uint32{}
			}
			req.Prompts[i].TokenIDs = l
		}
		return nil
	default:
		if err := json.Unmarshal(p, &req.TokenIDs); err != nil {
			return invalid("prompt: token IDs must be integers from 0 to 2^32-1: %v", err)
		}
		return nil
	}
}

type chatBody struct {
	common
	Messages             json.RawMessage `json:"messages"`
	Tools                json.RawMessage `json:"tools"`
	Documents            json.RawMessage `json:"documents"`
	ChatTemplate         *string         `json:"chat_template"`
	ChatTemplateKWArgs   json.RawMessage `json:"chat_template_kwargs"`
	AddGenerationPrompt  *bool           `json:"add_generation_prompt"`
	ContinueFinalMessage *bool           `json:"continue_final_message"`
}

func parseChat(body []byte, lim Limits) (kvcache.Request, error) {
	var b chatBody
	var req kvcache.Request
	fields := topMembers(body)
	// As for prompts, a chat over the message limit is refused before the
	// validating pass, counting no further than the limit.
	if msgs := bytes.TrimSpace(fields["messages"]); len(msgs) > 0 && msgs[0] == '[' {
		n, _ := arrayShape(msgs, lim.MaxMessages)
		if err := overCounted("messages", "messages", n, lim.MaxMessages); err != nil {
			return req, err
		}
	}
	if err := decodeBody(body, fields, &b); err != nil {
		return req, err
	}
	if err := b.apply(&req); err != nil {
		return req, err
	}
	msgs := bytes.TrimSpace(b.Messages)
	if isNull(msgs) || msgs[0] != '[' {
		return req, invalid("messages must be a list of messages")
	}
	if n, _ := arrayShape(msgs, 1); n == 0 {
		return req, fmt.Errorf("%w: no messages", ErrNotScorable)
	}
	chars := utf8.RuneCount(msgs) + utf8.RuneCount(b.Tools) + utf8.RuneCount(b.Documents)
	if err := over("messages", "characters", chars, lim.MaxPromptChars); err != nil {
		return req, err
	}
	chat := &kvcache.ChatRequest{
		RawMessages:       msgs,
		RawDocuments:      nonNull(b.Documents),
		RawTemplateKWArgs: nonNull(b.ChatTemplateKWArgs),
	}
	if chat.RawTemplateKWArgs != nil && chat.RawTemplateKWArgs[0] != '{' {
		return req, invalid("chat_template_kwargs must be an object")
	}
	if b.ChatTemplate != nil {
		chat.ChatTemplate = *b.ChatTemplate
	}
	if t := nonNull(b.Tools); t != nil {
		var err error
		if chat.RawTools, err = normalizeTools(t); err != nil {
			return req, err
		}
	}
	if b.ContinueFinalMessage != nil {
		chat.ContinueFinalMessage = *b.ContinueFinalMessage
	}
	// add_generation_prompt is true by default in vLLM. With
	// continue_final_message the default would be rejected (vLLM answers
	// 400 to both true, and transformers refuses the pair), so a client
	// continuing a message that leaves it out means false: that is the
	// only reading under which the request is served.
	chat.AddGenerationPrompt = !chat.ContinueFinalMessage
	if b.AddGenerationPrompt != nil {
		chat.AddGenerationPrompt = *b.AddGenerationPrompt
	}
	if chat.AddGenerationPrompt && chat.ContinueFinalMessage {
		return req, invalid("cannot set both continue_final_message and add_generation_prompt to true")
	}
	if b.AddSpecialTokens != nil {
		chat.AddSpecialTokens = *b.AddSpecialTokens // vLLM's chat default: false
	}
	req.Chat = chat
	return req, nil
}

// topMembers returns the body's top-level members as topLevel finds them,
// before the body is validated: nil when it does not look like an object.
func topMembers(body []byte) map[string][]byte {
	fields, _ := topLevel(body)
	return fields
}

// decodeBody validates body and fills v's fields (each a json.RawMessage,
// *bool or *string tagged with its JSON key, embedded structs flattened)
// from its members (topMembers(body)) of the same name, decoding only those:
// a member kvtrack does not read, however large, costs one validating
// pass. It answers ErrInvalid for a body that is not a JSON object or a
// field of the wrong type.
func decodeBody(body []byte, fields map[string][]byte, v any) error {
	if !json.Valid(body) {
		return invalid("body is not valid JSON")
	}
	if fields == nil {
		return invalid("body is not a JSON object")
	}
	return fill(reflect.ValueOf(v).Elem(), fields)
}

func fill(v reflect.Value, fields map[string][]byte) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			if err := fill(v.Field(i), fields); err != nil {
				return err
			}
			continue
		}
		raw, ok := fields[strings.Split(f.Tag.Get("json"), ",")[0]]
		if !ok {
			continue
		}
		if rm, isRaw := v.Field(i).Addr().Interface().(*json.RawMessage); isRaw {
			*rm = raw // a subslice of the body, not a copy
			continue
		}
		if err := json.Unmarshal(raw, v.Field(i).Addr().Interface()); err != nil {
			return invalid("%s: %v", f.Tag.Get("json"), err)
		}
	}
	return nil
}

func isNull(raw []byte) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

func nonNull(raw json.RawMessage) json.RawMessage {
	if isNull(raw) {
		return nil
	}
	return bytes.TrimSpace(raw)
}

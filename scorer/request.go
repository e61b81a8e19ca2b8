package scorer

import (
	"encoding/json"

	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/framework/interface/scheduling"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/openai"
)

// toRequest turns the EPP's request into the kvcache.Request vLLM will
// hash, through kvcache/openai, the mapper the router and doctor share.
//
//   - Token IDs an upstream plugin produced win over the body.
//   - The body comes from the parsed payload GIE keeps (Body.Payload, the
//     whole JSON body as a map, or raw bytes), so every field vLLM reads
//     is there with its presence intact: an omitted add_generation_prompt
//     takes vLLM's default (true), a list prompt is a batch. Re-encoding
//     the map sorts object keys; messages are rebuilt in vLLM's key order
//     by the chat preprocessing and tools by the mapper, so only the key
//     order inside tool parameters, documents and chat_template_kwargs can
//     differ from what vLLM renders.
//   - Without a payload, the typed fields GIE parsed are used. They have
//     lost whether a bool was sent: add_generation_prompt false there is
//     read as omitted, hence vLLM's default true, unless
//     continue_final_message is set (the only case where false is needed
//     for the request to be served at all). Non-text content parts and
//     tool calls are lost too.
//   - The model is the target model after GIE's traffic split, which is
//     what vLLM receives; the Indexer keys it as a LoRA adapter when it
//     names one.
//
// A body the scorer cannot use (responses, conversations, embeddings,
// prompt_embeds, or invalid) gives ok false.
func (s *Scorer) toRequest(r *scheduling.LLMRequest) (req kvcache.Request, ok bool) {
	if r.TokenizedPrompt != nil && len(r.TokenizedPrompt.TokenIDs) > 0 {
		req.TokenIDs = r.TokenizedPrompt.TokenIDs
		if r.Body != nil {
			req.CacheSalt = r.Body.CacheSalt()
		}
		req.Model = r.TargetModel
		return req, true
	}
	if r.Body == nil {
		return req, false
	}
	var api openai.API
	switch {
	case r.Body.Completions != nil:
		api = openai.Completions
	case r.Body.ChatCompletions != nil:
		api = openai.ChatCompletions
	default:
		return req, false
	}
	body, err := payloadJSON(r.Body)
	if err != nil {
		return req, false
	}
	req, err = openai.Parse(api, body, openai.Limits{})
	if err != nil {
		if s.log.V(1).Enabled() {
			s.log.V(1).Info("request not scored", "requestID", r.RequestId, "reason", err.Error())
		}
		return req, false
	}
	if r.TargetModel != "" {
		req.Model = r.TargetModel
	}
	return req, true
}

// payloadJSON returns the request body as JSON: GIE's payload when it kept
// one, else a body rebuilt from the typed fields.
func payloadJSON(b *scheduling.LLMRequestBody) ([]byte, error) {
	switch p := b.Payload.(type) {
	case scheduling.RawPayload:
		if len(p) > 0 {
			return p, nil
		}
	case scheduling.PayloadMap:
		if p != nil {
			return json.Marshal(map[string]any(p))
		}
	}
	if c := b.Completions; c != nil {
		body := map[string]any{"prompt": c.Prompt}
		if c.CacheSalt != "" {
			body["cache_salt"] = c.CacheSalt
		}
		return json.Marshal(body)
	}
	return json.Marshal(typedChat(b.ChatCompletions))
}

// typedChat rebuilds a chat body from GIE's typed fields (see toRequest for
// what they have lost).
func typedChat(c *scheduling.ChatCompletionsRequest) map[string]any {
	type part struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	msgs := make([]map[string]any, len(c.Messages))
	for i, m := range c.Messages {
		msg := map[string]any{"role": m.Role, "content": m.Content.Raw}
		if m.Content.Structured != nil {
			parts := []part{}
			for _, blk := range m.Content.Structured {
				parts = append(parts, part{Type: blk.Type, Text: blk.Text})
			}
			msg["content"] = parts
		}
		msgs[i] = msg
	}
	body := map[string]any{
		"messages":               msgs,
		"continue_final_message": c.ContinueFinalMessage,
		// false here may be an omitted field; vLLM's default is true.
		"add_generation_prompt": c.AddGenerationPrompt || !c.ContinueFinalMessage,
	}
	for k, v := range map[string]any{"tools": c.Tools, "documents": c.Documents, "chat_template_kwargs": c.ChatTemplateKWArgs} {
		if v != nil {
			body[k] = v
		}
	}
	if c.ChatTemplate != "" {
		body["chat_template"] = c.ChatTemplate
	}
	if c.CacheSalt != "" {
		body["cache_salt"] = c.CacheSalt
	}
	return body
}

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
	pm, isMap := r.Body.Payload.(scheduling.PayloadMap)
	if !isMap || pm == nil {
		if raw, isRaw := r.Body.Payload.(scheduling.RawPayload); !isRaw || len(raw) == 0 {
			pm = typedPayload(r.Body) // no payload kept: GIE's typed fields
		}
	}
	if pm != nil {
		if req, handled := fromPayloadMap(api, pm); handled {
			if r.TargetModel != "" {
				req.Model = r.TargetModel
			}
			return req, true
		}
	}
	body, err := payloadJSON(r.Body, pm)
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

// payloadJSON returns the request body as JSON: GIE's raw payload when it
// kept one, else pm (its parsed payload, or the body rebuilt from the typed
// fields) encoded.
func payloadJSON(b *scheduling.LLMRequestBody, pm scheduling.PayloadMap) ([]byte, error) {
	if raw, ok := b.Payload.(scheduling.RawPayload); ok && len(raw) > 0 {
		return raw, nil
	}
	return json.Marshal(map[string]any(pm))
}

// typedPayload rebuilds a body from GIE's typed fields, for requests whose
// payload GIE did not keep (see toRequest for what they have lost).
func typedPayload(b *scheduling.LLMRequestBody) scheduling.PayloadMap {
	if c := b.Completions; c != nil {
		body := scheduling.PayloadMap{"prompt": c.Prompt}
		if c.Prompt.Strings == nil {
			body["prompt"] = c.Prompt.Raw
		}
		if c.CacheSalt != "" {
			body["cache_salt"] = c.CacheSalt
		}
		return body
	}
	if b.ChatCompletions != nil {
		return typedChat(b.ChatCompletions)
	}
	return nil
}

// typedChat rebuilds a chat body from GIE's typed fields (see toRequest for
// what they have lost).
func typedChat(c *scheduling.ChatCompletionsRequest) scheduling.PayloadMap {
	type part struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	msgs := make([]any, len(c.Messages))
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
	body := scheduling.PayloadMap{
		"messages":               msgs,
		"continue_final_message": c.ContinueFinalMessage,
		// false here may be an omitted field; vLLM's default is true.
		"add_generation_prompt": c.AddGenerationPrompt || !c.ContinueFinalMessage,
	}
	// Only fields that are set: a nil slice in an interface is not nil.
	if c.Tools != nil {
		body["tools"] = c.Tools
	}
	if c.Documents != nil {
		body["documents"] = c.Documents
	}
	if c.ChatTemplateKWArgs != nil {
		body["chat_template_kwargs"] = c.ChatTemplateKWArgs
	}
	if c.ChatTemplate != "" {
		body["chat_template"] = c.ChatTemplate
	}
	if c.CacheSalt != "" {
		body["cache_salt"] = c.CacheSalt
	}
	return body
}

// fromPayloadMap maps the common request shapes straight from GIE's parsed
// payload: a completion with one text prompt, and a chat of role/content
// string messages without tools, documents or template settings. Those
// need no JSON round trip (re-encoding and re-parsing a 32k-character
// prompt cost ten times the rest of Score), and the key cache then skips
// tokenizing a request seen before. It applies openai.Parse's defaults
// and answers handled false for anything else, which goes through
// openai.Parse; TestPayloadMapFastPathAgreesWithTheMapper holds the two
// to the same result.
func fromPayloadMap(api openai.API, p scheduling.PayloadMap) (req kvcache.Request, handled bool) {
	optBool := func(key string) (v *bool, ok bool) {
		switch x := p[key].(type) {
		case nil:
			return nil, true
		case bool:
			return &x, true
		}
		return nil, false
	}
	if m, isStr := p["model"].(string); isStr {
		req.Model = m
	} else if p["model"] != nil {
		return req, false
	}
	switch salt := p["cache_salt"].(type) {
	case nil:
	case string:
		if salt == "" {
			return req, false // the mapper's 400
		}
		req.CacheSalt = salt
	default:
		return req, false
	}
	addSpecial, ok := optBool("add_special_tokens")
	if !ok {
		return req, false
	}
	switch api {
	case openai.Completions:
		prompt, isStr := p["prompt"].(string)
		if !isStr || prompt == "" || p["prompt_embeds"] != nil {
			return req, false
		}
		req.Prompt = prompt
		if addSpecial != nil {
			req.NoSpecialTokens = !*addSpecial
		}
		return req, true
	case openai.ChatCompletions:
		for _, key := range []string{"tools", "documents", "chat_template", "chat_template_kwargs"} {
			if p[key] != nil {
				return req, false
			}
		}
		msgs, isList := p["messages"].([]any)
		if !isList || len(msgs) == 0 {
			return req, false
		}
		chat := &kvcache.ChatRequest{Messages: make([]kvcache.ChatMessage, len(msgs))}
		for i, m := range msgs {
			msg, isMap := m.(map[string]any)
			if !isMap || len(msg) != 2 {
				return req, false
			}
			role, okRole := msg["role"].(string)
			content, okContent := msg["content"].(string)
			if !okRole || !okContent {
				return req, false
			}
			chat.Messages[i] = kvcache.ChatMessage{Role: role, Content: content}
		}
		cont, ok1 := optBool("continue_final_message")
		gen, ok2 := optBool("add_generation_prompt")
		if !ok1 || !ok2 {
			return req, false
		}
		if cont != nil {
			chat.ContinueFinalMessage = *cont
		}
		chat.AddGenerationPrompt = !chat.ContinueFinalMessage // vLLM's default; see openai.Parse
		if gen != nil {
			chat.AddGenerationPrompt = *gen
		}
		if chat.AddGenerationPrompt && chat.ContinueFinalMessage {
			return req, false // the mapper's 400
		}
		if addSpecial != nil {
			chat.AddSpecialTokens = *addSpecial
		}
		req.Chat = chat
		return req, true
	}
	return req, false
}

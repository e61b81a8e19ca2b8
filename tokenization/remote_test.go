package tokenization

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// fakeVLLM serves vLLM's /tokenize API (vllm/entrypoints/openai: the
// TokenizeCompletionRequest and TokenizeChatRequest bodies, their defaults,
// the TokenizeResponse and the ErrorResponse shapes) over a real tokenizer.
func fakeVLLM(t *testing.T, model string, tok *Local) *httptest.Server {
	t.Helper()
	writeErr := func(w http.ResponseWriter, code int, typ, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"object": "error", "message": msg, "type": typ, "param": nil, "code": code})
	}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/tokenize" {
			writeErr(w, http.StatusNotFound, "NotFoundError", "not found")
			return
		}
		var body map[string]json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeErr(w, http.StatusBadRequest, "BadRequestError", err.Error())
			return
		}
		var name string
		json.Unmarshal(body["model"], &name)
		if name != "" && name != model {
			writeErr(w, http.StatusNotFound, "NotFoundError", fmt.Sprintf("The model `%s` does not exist.", name))
			return
		}
		flag := func(key string, def bool) bool {
			v := def
			if raw, ok := body[key]; ok {
				json.Unmarshal(raw, &v)
			}
			return v
		}
		var ids []uint32
		var err error
		if msgs, ok := body["messages"]; ok {
			req := &ChatRequest{Messages: msgs, Tools: body["tools"], ChatTemplateKwargs: body["chat_template_kwargs"],
				AddGenerationPrompt: flag("add_generation_prompt", true), ContinueFinalMessage: flag("continue_final_message", false),
				AddSpecialTokens: flag("add_special_tokens", false)}
			json.Unmarshal(body["chat_template"], &req.ChatTemplate)
			ids, err = tok.EncodeChat(req)
		} else {
			var prompt string
			if err := json.Unmarshal(body["prompt"], &prompt); err != nil {
				writeErr(w, http.StatusBadRequest, "BadRequestError", "prompt: "+err.Error())
				return
			}
			ids, err = tok.Encode(prompt, flag("add_special_tokens", true))
		}
		if err != nil {
			writeErr(w, http.StatusBadRequest, "BadRequestError", err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"count": len(ids), "max_model_len": 40960, "tokens": ids, "token_strs": nil})
	}))
}

func TestRemoteMatchesLocal(t *testing.T) {
	l := loadLocal(t, "qwen3")
	srv := fakeVLLM(t, "Qwen/Qwen3-0.6B", l)
	defer srv.Close()
	r, err := NewRemote(srv.URL+"/", "Qwen/Qwen3-0.6B", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, add := range []bool{false, true} {
		got, err := r.Encode("Hello world <|im_start|>", add)
		want, _ := l.Encode("Hello world <|im_start|>", add)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Encode(add=%v) = %v, %v; want %v", add, got, err, want)
		}
	}
	for _, req := range []*ChatRequest{
		{Messages: []byte(`[{"role":"user","content":"hi"}]`), AddGenerationPrompt: true},
		// add_generation_prompt must be sent even when false: vLLM's default is true.
		{Messages: []byte(`[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]`)},
		{Messages: []byte(`[{"role":"user","content":"2+2?"}]`), AddGenerationPrompt: true, ChatTemplateKwargs: []byte(`{"enable_thinking": false}`)},
	} {
		got, err := r.EncodeChat(req)
		want, _ := l.EncodeChat(req)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("EncodeChat(%s) = %v, %v; want %v", req.Messages, got, err, want)
		}
	}
}

func TestRemoteReportsServerErrors(t *testing.T) {
	srv := fakeVLLM(t, "served-model", loadLocal(t, "qwen3"))
	defer srv.Close()
	r, _ := NewRemote(srv.URL, "other-model", nil)
	_, err := r.Encode("hi", true)
	if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "404") {
		t.Errorf("err = %v, want the server's 404 message", err)
	}
	r, _ = NewRemote(srv.URL, "served-model", nil)
	if _, err := r.EncodeChat(&ChatRequest{Messages: []byte(`[{"role":"user","content":[{"type":"image_url"}]}]`)}); err == nil {
		t.Error("EncodeChat with an unsupported content part: no error")
	}
	if _, err := NewRemote("vllm:8000", "m", nil); err == nil {
		t.Error("NewRemote accepted a URL without a scheme")
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"count": 1}`)) }))
	defer bad.Close()
	r, _ = NewRemote(bad.URL, "m", nil)
	if _, err := r.Encode("hi", true); err == nil {
		t.Error("a response without tokens was accepted")
	}
}

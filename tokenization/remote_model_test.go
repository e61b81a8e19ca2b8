package tokenization

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// TestRemoteTokenizesForTheRequestsModel: vLLM's /tokenize picks the model
// by the request's "model", so a request for a model the Remote was not
// built for must name that model, through the Pool too, whose cache keeps
// the models apart.
func TestRemoteTokenizesForTheRequestsModel(t *testing.T) {
	l := loadLocal(t, "qwen3")
	srv := fakeVLLM(t, "served", l)
	defer srv.Close()
	r, err := NewRemote(srv.URL, "other", nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := l.Encode("Hello world", true)
	p, err := NewPool(r, PoolConfig{})
	if err != nil {
		t.Fatal(err)
	}
	chat := &ChatRequest{Messages: []byte(`[{"role":"user","content":"hi"}]`), AddGenerationPrompt: true}
	wantChat, _ := l.EncodeChat(chat)
	for name, tok := range map[string]ModelTokenizer{"remote": r, "pool": p} {
		got, err := tok.EncodeFor(context.Background(), "served", "Hello world", true)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: EncodeFor(served) = %v, %v; want %v", name, got, err, want)
		}
		if got, err := tok.EncodeChatFor(context.Background(), "served", chat); err != nil || !slices.Equal(got, wantChat) {
			t.Errorf("%s: EncodeChatFor(served) = %v, %v; want %v", name, got, err, wantChat)
		}
		// An empty model is the Remote's own, which this server does not serve.
		if _, err := tok.EncodeFor(context.Background(), "", "Hello world", true); err == nil {
			t.Errorf("%s: EncodeFor(\"\") tokenized for a model the server does not serve", name)
		}
	}
}

// TestRemoteHonoursTheRequestsContext: cancelling the request's context
// ends the call; it does not wait for the client's own timeout.
func TestRemoteHonoursTheRequestsContext(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // then the server notices the client leaving
		arrived <- struct{}{}
		<-r.Context().Done() // answers only when the client goes away
	}))
	defer srv.Close()
	r, err := NewRemote(srv.URL, "m", nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := NewPool(r, PoolConfig{})
	for name, call := range map[string]func(ctx context.Context) error{
		"EncodeFor": func(ctx context.Context) error { _, err := r.EncodeFor(ctx, "m", "x", true); return err },
		"EncodeChatFor": func(ctx context.Context) error {
			_, err := r.EncodeChatFor(ctx, "m", &ChatRequest{Messages: []byte(`[]`)})
			return err
		},
		"Pool": func(ctx context.Context) error { _, err := p.EncodeFor(ctx, "m", "y", true); return err },
	} {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- call(ctx) }()
		<-arrived
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("%s: error %v after cancellation, want context.Canceled", name, err)
		}
	}
}

package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/tokenization"
)

// tokenizerCheck loads the tokenizer the configuration names, as the
// router would at start, so a wrong path fails the config check rather
// than every probe. A tokenizer.url must answer one tokenize request.
func tokenizerCheck(ctx context.Context, o *Options) (reason string, ok bool) {
	t := o.Config.Tokenizer
	switch {
	case o.Tokenizer != nil:
		return "", true
	case t.Path != "":
		if _, err := tokenization.Load(ctx, t.Path, tokenization.LoadOptions{Offline: true}); err != nil {
			return fmt.Sprintf("tokenizer.path %q does not load: %v", t.Path, err), false
		}
		return fmt.Sprintf("tokenizer.path %q loads", t.Path), true
	case t.URL != "":
		r, err := tokenization.NewRemote(t.URL, t.Model, o.HTTPClient)
		if err != nil {
			return fmt.Sprintf("tokenizer.url %q: %v", t.URL, err), false
		}
		if _, err := r.EncodeContext(ctx, "kvtrack doctor", false); err != nil {
			return fmt.Sprintf("tokenizer.url %q does not tokenize: %v", t.URL, err), false
		}
		return fmt.Sprintf("tokenizer.url %q tokenizes", t.URL), true
	}
	return "no tokenizer configured: only requests that carry token IDs can be scored", true
}

// engineVersions asks each pod's GET /version, which vLLM's OpenAI server
// answers with {"version": "..."}. A pod that does not answer so is not
// known to be vLLM, and the doctor then names no vLLM version for it: other
// publishers (SGLang, simulators) reuse vLLM's event layouts.
func engineVersions(ctx context.Context, o *Options) map[string]string {
	out := make(map[string]string, len(o.Pods))
	var mu sync.Mutex
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 2 * time.Second, Transport: o.HTTPClient.Transport}
	for _, pod := range o.Pods {
		wg.Go(func() {
			v := vllmVersion(ctx, client, pod)
			mu.Lock()
			out[pod] = v
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func vllmVersion(ctx context.Context, client *http.Client, pod string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+pod+"/version", nil)
	if err != nil {
		return ""
	}
	resp, err := client.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	var v struct {
		Version string `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&v); err != nil {
		return ""
	}
	return v.Version
}

// usesTokenKeys reports whether keys derive from the events' token IDs, so
// the pod's hashes are never compared.
func usesTokenKeys(c kvcache.Config) bool { return c.KeyScheme == kvcache.KeySchemeTokens }

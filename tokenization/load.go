package tokenization

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/kvtrack/kvtrack/tokenization/hf"
)

// LoadOptions configures Load. The zero value is ready to use.
type LoadOptions struct {
	// Encoder tunes the tokenizer.json encoder (word cache size, regex
	// timeout).
	Encoder hf.Options
	// ChatTemplate, when set, replaces the model's chat template (vLLM's
	// --chat-template).
	ChatTemplate string
	// Now is the clock of the templates' strftime_now; nil means time.Now.
	Now func() time.Time
	// Revision is the hub revision for model IDs; empty means "main".
	Revision string
	// Offline forbids downloads from the hub, as HF_HUB_OFFLINE=1 does.
	Offline bool
	// HTTPClient downloads from the hub; nil means a client with a
	// one-minute timeout.
	HTTPClient *http.Client
	// RawPostProcessor keeps tokenizer.json's post-processor even for the
	// tokenizer classes that transformers rebuilds it for (see Load).
	RawPostProcessor bool
}

// ErrNotFound is returned when no tokenizer.json can be found for a name.
var ErrNotFound = errors.New("tokenizer not found")

// Load finds and loads a model's tokenizer. name is, in order:
//
//   - a tokenizer.json file (tokenizer_config.json and chat templates are
//     read from the same directory);
//   - a directory holding tokenizer.json;
//   - a hub model ID ("Org/Name") found in the HuggingFace cache:
//     $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub, in
//     the layout models--Org--Name/snapshots/<commit>/;
//   - a hub model ID downloaded from $HF_ENDPOINT (default
//     https://huggingface.co) with $HF_TOKEN as bearer token into that
//     cache, unless opts.Offline or HF_HUB_OFFLINE=1.
//
// The chat templates come from chat_template.jinja (plus named ones in
// additional_chat_templates/*.jinja), else chat_template.json, else
// tokenizer_config.json, as transformers reads them; opts.ChatTemplate, a
// template name or source, replaces the default one. A template the
// renderer cannot handle does not fail the load: completions work and
// chat requests return the error, which names the construct and its line.
//
// As transformers 4.x does for LlamaTokenizerFast and GemmaTokenizerFast,
// the special tokens added by Encode(text, true) follow tokenizer_config's
// add_bos_token/add_eos_token for those classes, unless
// opts.RawPostProcessor.
func Load(ctx context.Context, name string, opts LoadOptions) (*Local, error) {
	dir, file, err := locate(ctx, name, &opts)
	if err != nil {
		return nil, err
	}
	enc, err := hf.LoadFile(file, opts.Encoder)
	if err != nil {
		return nil, err
	}
	cfg, err := readTokenizerConfig(dir)
	if err != nil {
		return nil, err
	}
	l := &Local{enc: enc}
	if !opts.RawPostProcessor {
		if l.special, err = transformersSpecialTokens(cfg, enc); err != nil {
			return nil, err
		}
	}
	sources, err := chatTemplateSources(dir, cfg, opts.ChatTemplate)
	if err != nil {
		return nil, err
	}
	topts := ChatTemplateOptions{SpecialTokens: cfg.specialTokens(), Now: opts.Now}
	if l.chat, err = NewChatTemplate(sources, topts); err != nil {
		l.chatErr = fmt.Errorf("%s: %w (serve this model's chat requests through the remote tokenizer)", file, err)
		l.chat, _ = NewChatTemplate(nil, topts)
	}
	return l, nil
}

// tokenizerConfig is the part of tokenizer_config.json Load reads.
type tokenizerConfig struct {
	raw            map[string]json.RawMessage
	TokenizerClass string
	AddBOS, AddEOS *bool
}

func readTokenizerConfig(dir string) (*tokenizerConfig, error) {
	cfg := &tokenizerConfig{raw: map[string]json.RawMessage{}}
	data, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &cfg.raw); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "tokenizer_config.json"), err)
	}
	_ = json.Unmarshal(cfg.raw["tokenizer_class"], &cfg.TokenizerClass)
	for key, dst := range map[string]**bool{"add_bos_token": &cfg.AddBOS, "add_eos_token": &cfg.AddEOS} {
		var b bool
		if json.Unmarshal(cfg.raw[key], &b) == nil {
			*dst = &b
		}
	}
	return cfg, nil
}

// token returns a special token's content: a string or {"content": ...}.
func (c *tokenizerConfig) token(key string) (string, bool) {
	raw, ok := c.raw[key]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Content != nil {
		return *obj.Content, true
	}
	return "", false
}

func (c *tokenizerConfig) specialTokens() map[string]string {
	out := map[string]string{}
	for _, k := range []string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"} {
		if v, ok := c.token(k); ok {
			out[k] = v
		}
	}
	return out
}

func transformersSpecialTokens(cfg *tokenizerConfig, enc *hf.Tokenizer) (*specialTokens, error) {
	switch strings.TrimSuffix(cfg.TokenizerClass, "Fast") {
	case "LlamaTokenizer", "GemmaTokenizer", "CodeLlamaTokenizer":
	default:
		return nil, nil
	}
	// transformers' defaults for these classes: BOS yes, EOS no.
	st := &specialTokens{addBOS: cfg.AddBOS == nil || *cfg.AddBOS, addEOS: cfg.AddEOS != nil && *cfg.AddEOS}
	for _, s := range []struct {
		key  string
		want bool
		id   *uint32
	}{{"bos_token", st.addBOS, &st.bos}, {"eos_token", st.addEOS, &st.eos}} {
		if !s.want {
			continue
		}
		content, ok := cfg.token(s.key)
		if !ok {
			return nil, fmt.Errorf("tokenizer_config.json: add_%s is set but %s is missing", s.key, s.key)
		}
		id, ok := enc.TokenID(content)
		if !ok {
			return nil, fmt.Errorf("tokenizer_config.json: %s %q is not a token", s.key, content)
		}
		*s.id = id
	}
	return st, nil
}

// chatTemplateSources gathers the templates as transformers loads them:
// chat_template.jinja (with named templates from
// additional_chat_templates/) replaces chat_template.json, which replaces
// tokenizer_config.json's chat_template. override, vLLM's --chat-template,
// names one of them or is a template source; either way it becomes the
// default.
func chatTemplateSources(dir string, cfg *tokenizerConfig, override string) (map[string]string, error) {
	sources, err := tokenizerTemplates(dir, cfg)
	if err != nil || override == "" {
		return sources, err
	}
	if src, ok := sources[override]; ok {
		sources["default"] = src
		return sources, nil
	}
	if sources == nil {
		sources = map[string]string{}
	}
	sources["default"] = override
	return sources, nil
}

func tokenizerTemplates(dir string, cfg *tokenizerConfig) (map[string]string, error) {
	if data, err := os.ReadFile(filepath.Join(dir, "chat_template.jinja")); err == nil {
		out := map[string]string{"default": string(data)}
		extra, _ := filepath.Glob(filepath.Join(dir, "additional_chat_templates", "*.jinja"))
		for _, f := range extra {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			out[strings.TrimSuffix(filepath.Base(f), ".jinja")] = string(data)
		}
		return out, nil
	}
	if data, err := os.ReadFile(filepath.Join(dir, "chat_template.json")); err == nil {
		var v struct {
			ChatTemplate json.RawMessage `json:"chat_template"`
		}
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "chat_template.json"), err)
		}
		return parseTemplateField(v.ChatTemplate)
	}
	return parseTemplateField(cfg.raw["chat_template"])
}

// parseTemplateField reads a chat_template value: a string, or a list of
// {name, template}.
func parseTemplateField(raw json.RawMessage) (map[string]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return map[string]string{"default": s}, nil
	}
	var list []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("chat_template: want a string or a list of {name, template}: %w", err)
	}
	out := map[string]string{}
	for _, t := range list {
		out[t.Name] = t.Template
	}
	return out, nil
}

// locate returns the directory and tokenizer.json path for name.
func locate(ctx context.Context, name string, opts *LoadOptions) (dir, file string, err error) {
	if st, err := os.Stat(name); err == nil {
		if st.IsDir() {
			file = filepath.Join(name, "tokenizer.json")
			if _, err := os.Stat(file); err != nil {
				return "", "", fmt.Errorf("%w: %s has no tokenizer.json", ErrNotFound, name)
			}
			return name, file, nil
		}
		return filepath.Dir(name), name, nil
	}
	if !modelIDRE.MatchString(name) {
		return "", "", fmt.Errorf("%w: %q is neither a file, a directory nor a hub model ID (Org/Name)", ErrNotFound, name)
	}
	cache := hubCacheDir()
	rev := opts.Revision
	if rev == "" {
		rev = "main"
	}
	if dir := cachedSnapshot(cache, name, rev); dir != "" {
		return dir, filepath.Join(dir, "tokenizer.json"), nil
	}
	if opts.Offline || os.Getenv("HF_HUB_OFFLINE") == "1" {
		return "", "", fmt.Errorf("%w: %s is not in the HuggingFace cache %s and downloads are off", ErrNotFound, name, cache)
	}
	dir, err = download(ctx, cache, name, rev, opts.HTTPClient)
	if err != nil {
		return "", "", err
	}
	return dir, filepath.Join(dir, "tokenizer.json"), nil
}

var modelIDRE = regexp.MustCompile(`^[\w.-]+/[\w.-]+$`)

func hubCacheDir() string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("HF_HOME"); d != "" {
		return filepath.Join(d, "hub")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "huggingface", "hub")
	}
	return filepath.Join(home, ".cache", "huggingface", "hub")
}

func repoDir(cache, id string) string {
	return filepath.Join(cache, "models--"+strings.ReplaceAll(id, "/", "--"))
}

// cachedSnapshot returns the snapshot directory of rev (a ref such as
// "main", or a commit) holding tokenizer.json, or "". Without the ref file,
// the most recently modified snapshot with a tokenizer.json is used.
func cachedSnapshot(cache, id, rev string) string {
	repo := repoDir(cache, id)
	commit := rev
	if data, err := os.ReadFile(filepath.Join(repo, "refs", rev)); err == nil {
		commit = strings.TrimSpace(string(data))
	}
	if dir := filepath.Join(repo, "snapshots", commit); fileExists(filepath.Join(dir, "tokenizer.json")) {
		return dir
	}
	if rev != "main" {
		return ""
	}
	ents, err := os.ReadDir(filepath.Join(repo, "snapshots"))
	if err != nil {
		return ""
	}
	type snap struct {
		dir string
		mod time.Time
	}
	var snaps []snap
	for _, e := range ents {
		dir := filepath.Join(repo, "snapshots", e.Name())
		if st, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err == nil {
			snaps = append(snaps, snap{dir, st.ModTime()})
		}
	}
	if len(snaps) == 0 {
		return ""
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].mod.After(snaps[j].mod) })
	return snaps[0].dir
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// download fetches tokenizer.json and the optional template files of a hub
// model into the cache layout, so that the next Load finds them offline.
func download(ctx context.Context, cache, id, rev string, client *http.Client) (string, error) {
	if client == nil {
		client = &http.Client{Timeout: time.Minute}
	}
	endpoint := strings.TrimRight(os.Getenv("HF_ENDPOINT"), "/")
	if endpoint == "" {
		endpoint = "https://huggingface.co"
	}
	get := func(file string) ([]byte, string, error) {
		u := fmt.Sprintf("%s/%s/resolve/%s/%s", endpoint, id, url.PathEscape(rev), file)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, "", err
		}
		if tok := os.Getenv("HF_TOKEN"); tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", fmt.Errorf("download %s: %w", u, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return nil, "", fs.ErrNotExist
		}
		if resp.StatusCode != http.StatusOK {
			return nil, "", fmt.Errorf("download %s: %s", u, resp.Status)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
		if err != nil {
			return nil, "", fmt.Errorf("download %s: %w", u, err)
		}
		return data, resp.Header.Get("X-Repo-Commit"), nil
	}
	data, commit, err := get("tokenizer.json")
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: the hub has no tokenizer.json for %s@%s", ErrNotFound, id, rev)
	}
	if err != nil {
		return "", err
	}
	if commit == "" || strings.ContainsAny(commit, `/\.`) {
		commit = rev
	}
	repo := repoDir(cache, id)
	dir := filepath.Join(repo, "snapshots", commit)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	files := map[string][]byte{"tokenizer.json": data}
	for _, f := range []string{"tokenizer_config.json", "chat_template.jinja", "chat_template.json"} {
		d, _, err := get(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		files[f] = d
	}
	for f, d := range files {
		if err := writeFileAtomic(filepath.Join(dir, f), d); err != nil {
			return "", err
		}
	}
	if commit != rev {
		if err := os.MkdirAll(filepath.Join(repo, "refs"), 0o755); err != nil {
			return "", err
		}
		if err := writeFileAtomic(filepath.Join(repo, "refs", rev), []byte(commit)); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

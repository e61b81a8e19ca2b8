package hf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// ErrUnsupported marks a tokenizer.json component or setting this package
// does not implement. Loading fails with it rather than encoding to token
// IDs that differ from the Rust crate's.
var ErrUnsupported = errors.New("unsupported tokenizer component")

func (e *unsupportedError) Unwrap() error { return ErrUnsupported }

// DefaultRegexTimeout bounds one regex match when Options.RegexTimeout is
// zero. The pre-tokenizer regexes of real models run in linear time; the
// bound is there for regexes that backtrack badly on hostile input.
const DefaultRegexTimeout = time.Second

// DefaultWordCacheBytes is the size of the per-word BPE cache when
// Options.WordCacheBytes is zero.
const DefaultWordCacheBytes = 8 << 20

// Options tunes a Tokenizer. The zero value is ready to use.
type Options struct {
	// WordCacheBytes bounds the memory of the cache of BPE results per
	// pre-tokenized word. Zero means DefaultWordCacheBytes; negative
	// disables the cache.
	WordCacheBytes int
	// RegexTimeout bounds one regex match. Zero means DefaultRegexTimeout.
	RegexTimeout time.Duration
	// NoFastPaths runs every regex through the general regex engine instead
	// of the hand-written matchers for well-known expressions (for tests).
	NoFastPaths bool
}

// Tokenizer encodes text with one tokenizer.json. It is immutable after
// loading and safe for concurrent use.
type Tokenizer struct {
	rawTokens  *matcher // added tokens matched before normalization
	normTokens *matcher // added tokens matched after normalization
	normalizer normalizer
	pre        preTokenizer
	model      *bpe
	post       postProcessor

	scratch sync.Pool
}

// LoadFile reads a tokenizer.json file.
func LoadFile(path string, opts Options) (*Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := Load(f, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Load reads a tokenizer.json document.
func Load(r io.Reader, opts Options) (*Tokenizer, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	var f fileJSON
	// The model's vocabulary and merges are most of the file: they are
	// set aside here and read by a dedicated scanner (jsonscan.go).
	model, err := decodeMembers(data, &f, "model")
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	f.Model = model["model"]
	return build(&f, &opts)
}

func build(f *fileJSON, o *Options) (*Tokenizer, error) {
	if isNull(f.Model) {
		return nil, errors.New("tokenizer.json: no model")
	}
	var m modelJSON
	big, err := decodeMembers(f.Model, &m, "vocab", "merges")
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: model: %w", err)
	}
	m.Vocab, m.Merges = big["vocab"], big["merges"]
	model, err := newBPE(&m)
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{model: model}
	if t.normalizer, err = parseNormalizer(f.Normalizer, o); err != nil {
		return nil, err
	}
	if t.pre, err = parsePreTokenizer(f.PreTokenizer, o); err != nil {
		return nil, err
	}
	if t.post, err = parsePostProcessor(f.PostProcessor); err != nil {
		return nil, err
	}
	if bl := finalByteLevel(t.pre); bl != nil && model.enableByteMode() {
		bl.mapBytes = false
	}
	if err := t.addTokens(f.AddedTokens); err != nil {
		return nil, err
	}
	if o.WordCacheBytes >= 0 {
		size := o.WordCacheBytes
		if size == 0 {
			size = DefaultWordCacheBytes
		}
		model.cache = newWordCache(size)
	}
	t.scratch.New = func() any { return new(scratch) }
	return t, nil
}

// addTokens builds the two added-token matchers. Special tokens come first,
// then the others, each in file order, as the crate orders its tries. A
// token whose content is in the model's vocabulary takes the vocabulary's
// ID, as the crate's loader does.
func (t *Tokenizer) addTokens(list []addedTokenJSON) error {
	var raw, normed []addedToken
	for pass := 0; pass < 2; pass++ {
		for _, a := range list {
			if a.Content == "" || a.Special != (pass == 0) {
				continue
			}
			tok := addedToken{content: a.Content, id: a.ID, singleWord: a.SingleWord, lstrip: a.LStrip, rstrip: a.RStrip}
			if id, ok := t.model.vocab[a.Content]; ok {
				tok.id = id
			}
			if !a.Normalized {
				raw = append(raw, tok)
				continue
			}
			if t.normalizer != nil {
				c, err := t.normalizer.normalize(tok.content)
				if err != nil {
					return fmt.Errorf("added token %q: %w", a.Content, err)
				}
				tok.content = c
			}
			normed = append(normed, tok)
		}
	}
	t.rawTokens, t.normTokens = newMatcher(raw), newMatcher(normed)
	return nil
}

// scratch holds the buffers of one Encode call, reused through a sync.Pool.
type scratch struct {
	pieces [2][]piece
	spare  [][]piece
	spans  []span
	spans2 []span
	syms   []symbol
	heap   []candidate
}

func (st *scratch) takePieces() []piece {
	if n := len(st.spare); n > 0 {
		p := st.spare[n-1]
		st.spare = st.spare[:n-1]
		return p[:0]
	}
	return nil
}

func (st *scratch) givePieces(p []piece) { st.spare = append(st.spare, p[:0]) }

// Encode returns the token IDs of text, as the Rust crate's
// Tokenizer::encode(text, add_special_tokens) does. Bytes that are not valid
// UTF-8 are read as U+FFFD. The error is non-nil only when a regex match
// exceeds its time bound.
func (t *Tokenizer) Encode(text string, addSpecialTokens bool) ([]uint32, error) {
	return t.AppendEncode(nil, text, addSpecialTokens)
}

// AppendEncode is Encode appending to dst.
func (t *Tokenizer) AppendEncode(dst []uint32, text string, addSpecialTokens bool) ([]uint32, error) {
	text = validUTF8(text)
	st := t.scratch.Get().(*scratch)
	defer t.scratch.Put(st)

	// Added tokens on the raw text, then normalization of the rest, then
	// added tokens on the normalized text.
	a := t.rawTokens.split(st.pieces[0][:0], text, true)
	b := st.pieces[1][:0]
	for _, p := range a {
		if p.id >= 0 {
			b = append(b, p)
			continue
		}
		s := p.s
		if t.normalizer != nil {
			var err error
			if s, err = t.normalizer.normalize(s); err != nil {
				return dst, err
			}
		}
		if s != "" {
			b = t.normTokens.split(b, s, p.start)
		}
	}
	st.pieces[0] = a
	if t.pre != nil {
		var err error
		a, err = t.pre.preTokenize(a[:0], b, st)
		st.pieces[1] = b
		if err != nil {
			return dst, err
		}
		b = a
	}
	words := b

	start := len(dst)
	for _, p := range words {
		if p.id >= 0 {
			dst = append(dst, uint32(p.id))
			continue
		}
		dst = t.model.tokenize(dst, p.s, st)
	}
	if t.pre != nil {
		st.pieces[0] = words
	} else {
		st.pieces[1] = words
	}
	if addSpecialTokens && t.post != nil {
		ids := append([]uint32(nil), dst[start:]...)
		dst = t.post.process(dst[:start], ids)
	}
	return dst, nil
}

// TokenID returns the ID of a token given by its content: an added token's
// ID, else the model vocabulary's.
func (t *Tokenizer) TokenID(content string) (uint32, bool) {
	for _, m := range []*matcher{t.rawTokens, t.normTokens} {
		for i := len(m.tokens) - 1; i >= 0; i-- {
			if m.tokens[i].content == content {
				return m.tokens[i].id, true
			}
		}
	}
	id, ok := t.model.vocab[content]
	return id, ok
}

package hf

import (
	"encoding/json"
	"fmt"
	"strings"
)

// The JSON shapes of tokenizer.json that this package reads. Polymorphic
// components stay raw until their "type" is known.

type fileJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	Model         json.RawMessage  `json:"model"`
	PostProcessor json.RawMessage  `json:"post_processor"`
}

type addedTokenJSON struct {
	ID         uint32 `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type typeJSON struct {
	Type string `json:"type"`
}

// patternJSON is a Split or Replace pattern: exactly one of the two is set.
type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	Dropout                 *float64        `json:"dropout"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
}

// parseMerges reads both merges formats: ["a b", ...] (the older one, split
// at the first space as the Rust crate does) and [["a", "b"], ...].
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	p := &jsonScanner{s: raw}
	var out [][2]string
	err := p.list('[', ']', func() error {
		if p.peek() == '"' {
			s, err := p.str()
			if err != nil {
				return err
			}
			a, b, ok := strings.Cut(s, " ")
			if !ok {
				return fmt.Errorf("merge %d: %q is not two space-separated tokens", len(out), s)
			}
			out = append(out, [2]string{a, b})
			return nil
		}
		var pair []string
		err := p.list('[', ']', func() error {
			s, err := p.str()
			pair = append(pair, s)
			return err
		})
		if err != nil {
			return err
		}
		if len(pair) != 2 {
			return fmt.Errorf("merge %d: %d strings, want a pair", len(out), len(pair))
		}
		out = append(out, [2]string{pair[0], pair[1]})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("model.merges: %w", err)
	}
	return out, nil
}

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

func componentType(raw json.RawMessage, what string) (string, error) {
	var t typeJSON
	if err := json.Unmarshal(raw, &t); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return t.Type, nil
}

// unsupportedError reports a tokenizer.json component this package does not
// implement; loading fails rather than producing different token IDs.
type unsupportedError struct {
	what, typ string
}

func (e *unsupportedError) Error() string {
	return fmt.Sprintf("tokenizer.json: %s type %q is not supported", e.what, e.typ)
}

// parseSequence parses the member list of a Sequence component (held
// under key) with parse, dropping members that parse to nothing.
func parseSequence[T any](raw json.RawMessage, what, key string, parse func(json.RawMessage) (T, error)) ([]T, error) {
	var v map[string]json.RawMessage
	var members []json.RawMessage
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%s Sequence: %w", what, err)
	}
	if err := json.Unmarshal(v[key], &members); err != nil && !isNull(v[key]) {
		return nil, fmt.Errorf("%s Sequence: %s: %w", what, key, err)
	}
	var out []T
	for _, r := range members {
		item, err := parse(r)
		if err != nil {
			return nil, err
		}
		if any(item) != nil {
			out = append(out, item)
		}
	}
	return out, nil
}

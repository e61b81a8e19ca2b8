package blockhash

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// ExtraKey is one item of a block's extra keys: the values besides the
// tokens that vLLM mixes into a block's hash (LoRA adapter, multimodal
// inputs, cache salt, prompt embeddings). Build one with ExtraString,
// ExtraInt, ExtraMM or ExtraBytes; the zero value is not a valid item.
//
// Per block, extra keys are a []ExtraKey in vLLM's order (LoRA, then
// multimodal, then cache salt, then prompt embeddings); nil means the block
// has none, which vLLM hashes as None, not as an empty tuple.
type ExtraKey struct {
	kind extraKind
	s    string
	i    int64
	b    []byte
}

type extraKind uint8

const (
	extraInvalid extraKind = iota
	extraString
	extraInt
	extraMM
	extraBytes
)

// ExtraString is a string item: a LoRA name (vLLM v0.11.1+), a bare
// multimodal identifier (v0.11.1 to v0.18), or a cache salt.
func ExtraString(s string) ExtraKey { return ExtraKey{kind: extraString, s: s} }

// ExtraInt is an integer item: the LoRA int id of vLLM v0.9.0 to v0.11.0.
func ExtraInt(i int64) ExtraKey { return ExtraKey{kind: extraInt, i: i} }

// ExtraMM is the (identifier, offset) tuple vLLM v0.19+ uses for a
// multimodal input overlapping the block; offset is relative to the block's
// first token and may be negative.
func ExtraMM(identifier string, offset int64) ExtraKey {
	return ExtraKey{kind: extraMM, s: identifier, i: offset}
}

// ExtraBytes is a bytes item: the SHA-256 digest of a block's prompt
// embeddings. The slice is not copied; do not modify it afterwards.
func ExtraBytes(b []byte) ExtraKey { return ExtraKey{kind: extraBytes, b: b} }

// String renders the item as vLLM's Python repr would, for messages.
func (k ExtraKey) String() string {
	switch k.kind {
	case extraString:
		return fmt.Sprintf("%q", k.s)
	case extraInt:
		return fmt.Sprintf("%d", k.i)
	case extraMM:
		return fmt.Sprintf("(%q, %d)", k.s, k.i)
	case extraBytes:
		return fmt.Sprintf("b'%x'", k.b)
	}
	return "<invalid extra key>"
}

// MarshalJSON encodes the item in the JSON form ParseExtraKeys reads:
// a string, an integer, [identifier, offset], or {"bytes": "<hex>"}.
func (k ExtraKey) MarshalJSON() ([]byte, error) {
	switch k.kind {
	case extraString:
		return json.Marshal(k.s)
	case extraInt:
		return json.Marshal(k.i)
	case extraMM:
		return json.Marshal([]any{k.s, k.i})
	case extraBytes:
		return json.Marshal(map[string]string{"bytes": fmt.Sprintf("%x", k.b)})
	}
	return nil, fmt.Errorf("blockhash: invalid extra key")
}

// RequestExtras are the per-request inputs from which vLLM derives the extra
// keys of a text-only prompt.
type RequestExtras struct {
	// LoRAName is the adapter name (vLLM v0.11.1+ hashes the name).
	LoRAName string
	// LoRAID is the adapter's int id, hashed by vLLM v0.9.0 to v0.11.0.
	// It is used only when LoRAName is empty and LoRAID is non-zero.
	LoRAID int64
	// CacheSalt isolates a tenant's cache: vLLM mixes it into block 0 only,
	// and it taints the rest of the chain through the parent hash.
	CacheSalt string
}

// IsZero reports whether the request has no extra keys at all.
func (r RequestExtras) IsZero() bool {
	return r.LoRAName == "" && r.LoRAID == 0 && r.CacheSalt == ""
}

// PerBlock returns the extra keys of blocks 0..numBlocks-1 in the shape
// Hasher.BlockKeys takes, or nil when the request has none. Blocks after the
// first share one backing slice.
func (r RequestExtras) PerBlock(numBlocks int) [][]ExtraKey {
	if r.IsZero() || numBlocks <= 0 {
		return nil
	}
	var lora []ExtraKey
	switch {
	case r.LoRAName != "":
		lora = []ExtraKey{ExtraString(r.LoRAName)}
	case r.LoRAID != 0:
		lora = []ExtraKey{ExtraInt(r.LoRAID)}
	}
	out := make([][]ExtraKey, numBlocks)
	for i := range out {
		out[i] = lora
	}
	if r.CacheSalt != "" {
		first := make([]ExtraKey, 0, len(lora)+1)
		first = append(first, lora...)
		out[0] = append(first, ExtraString(r.CacheSalt))
	}
	return out
}

// ParseExtraKeys parses extra keys in the JSON form of vLLM's BlockStored
// extra_keys field: an array with one entry per block, each null or an
// array of items, where an item is a string, an integer, an
// [identifier, offset] pair, or {"bytes": "<hex>"}.
func ParseExtraKeys(data []byte) ([][]ExtraKey, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var blocks []json.RawMessage
	if err := dec.Decode(&blocks); err != nil {
		return nil, fmt.Errorf("blockhash: extra keys must be a JSON array with one entry per block (null or an array of items): %w", err)
	}
	out := make([][]ExtraKey, len(blocks))
	for bi, raw := range blocks {
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("blockhash: extra keys of block %d: %s is not null or an array of items", bi, raw)
		}
		if len(items) == 0 {
			// vLLM never publishes an empty tuple: no extra keys is None.
			continue
		}
		keys := make([]ExtraKey, 0, len(items))
		for ii, item := range items {
			k, err := parseExtraItem(item)
			if err != nil {
				return nil, fmt.Errorf("blockhash: extra keys of block %d, item %d: %w", bi, ii, err)
			}
			keys = append(keys, k)
		}
		out[bi] = keys
	}
	return out, nil
}

const extraItemChoices = `a string, an integer, [identifier string, offset integer] or {"bytes": "<hex>"}`

func parseExtraItem(raw json.RawMessage) (ExtraKey, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return ExtraKey{}, err
	}
	switch v := v.(type) {
	case string:
		return ExtraString(v), nil
	case json.Number:
		i, err := parseInt64(v)
		if err != nil {
			return ExtraKey{}, err
		}
		return ExtraInt(i), nil
	case []any:
		if len(v) == 2 {
			id, ok1 := v[0].(string)
			n, ok2 := v[1].(json.Number)
			if ok1 && ok2 {
				off, err := parseInt64(n)
				if err != nil {
					return ExtraKey{}, err
				}
				return ExtraMM(id, off), nil
			}
		}
	case map[string]any:
		if h, ok := v["bytes"].(string); ok && len(v) == 1 {
			var b []byte
			if _, err := fmt.Sscanf(h, "%x", &b); err != nil && h != "" {
				return ExtraKey{}, fmt.Errorf("bytes %q is not hex", h)
			}
			if len(b)*2 != len(h) {
				return ExtraKey{}, fmt.Errorf("bytes %q is not hex", h)
			}
			return ExtraBytes(b), nil
		}
	}
	return ExtraKey{}, fmt.Errorf("%s is not %s", raw, extraItemChoices)
}

func parseInt64(n json.Number) (int64, error) {
	i, err := n.Int64()
	if err != nil {
		return 0, fmt.Errorf("%s is not an integer in [%d, %d]", n, int64(math.MinInt64), int64(math.MaxInt64))
	}
	return i, nil
}

package hf

import (
	"encoding/json"
	"fmt"
)

// postProcessor adds a model's special tokens around an encoding when the
// caller asks for add_special_tokens. Only single sequences are encoded, so
// only the "single" templates matter.
type postProcessor interface {
	process(dst, ids []uint32) []uint32
}

// template is TemplateProcessing's single template, flattened: nil entries
// stand for the sequence.
type template [][]uint32

func (t template) process(dst, ids []uint32) []uint32 {
	for _, part := range t {
		if part == nil {
			dst = append(dst, ids...)
		} else {
			dst = append(dst, part...)
		}
	}
	return dst
}

type postSeq []postProcessor

func (seq postSeq) process(dst, ids []uint32) []uint32 {
	cur := ids
	for _, p := range seq {
		cur = p.process(nil, cur)
	}
	return append(dst, cur...)
}

func parsePostProcessor(raw json.RawMessage) (postProcessor, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, err := componentType(raw, "post_processor")
	if err != nil {
		return nil, err
	}
	switch typ {
	case "ByteLevel":
		return nil, nil // adjusts offsets only
	case "TemplateProcessing":
		var v struct {
			Single []struct {
				SpecialToken *struct {
					ID string `json:"id"`
				} `json:"SpecialToken"`
				Sequence *struct {
					ID string `json:"id"`
				} `json:"Sequence"`
			} `json:"single"`
			SpecialTokens map[string]struct {
				IDs []uint32 `json:"ids"`
			} `json:"special_tokens"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("post_processor TemplateProcessing: %w", err)
		}
		var t template
		for _, item := range v.Single {
			switch {
			case item.Sequence != nil:
				t = append(t, nil)
			case item.SpecialToken != nil:
				st, ok := v.SpecialTokens[item.SpecialToken.ID]
				if !ok {
					return nil, fmt.Errorf("post_processor TemplateProcessing: special token %q has no entry in special_tokens", item.SpecialToken.ID)
				}
				t = append(t, append([]uint32{}, st.IDs...))
			}
		}
		return t, nil
	case "RobertaProcessing", "BertProcessing":
		var v struct {
			Sep [2]json.RawMessage `json:"sep"`
			Cls [2]json.RawMessage `json:"cls"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("post_processor %s: %w", typ, err)
		}
		var sep, cls uint32
		if err := json.Unmarshal(v.Sep[1], &sep); err != nil {
			return nil, fmt.Errorf("post_processor %s: sep: %w", typ, err)
		}
		if err := json.Unmarshal(v.Cls[1], &cls); err != nil {
			return nil, fmt.Errorf("post_processor %s: cls: %w", typ, err)
		}
		return template{{cls}, nil, {sep}}, nil
	case "Sequence":
		seq, err := parseSequence(raw, "post_processor", "processors", parsePostProcessor)
		if err != nil || len(seq) == 0 {
			return nil, err
		}
		if len(seq) == 1 {
			return seq[0], nil
		}
		return postSeq(seq), nil
	}
	return nil, &unsupportedError{"post_processor", typ}
}

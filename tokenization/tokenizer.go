package tokenization

import (
	"context"
	"fmt"

	"github.com/kvtrack/kvtrack/tokenization/hf"
)

// Tokenizer turns a prompt into the token IDs vLLM computes for it.
// addSpecialTokens is vLLM's add_special_tokens: true for completions (its
// default there), false for rendered chat prompts. Implementations are safe
// for concurrent use.
type Tokenizer interface {
	Encode(text string, addSpecialTokens bool) ([]uint32, error)
}

// ChatTokenizer also tokenizes chat requests: it renders the messages with
// the model's chat template and encodes the result with
// req.AddSpecialTokens (false unless the caller sets it, as in vLLM).
type ChatTokenizer interface {
	Tokenizer
	EncodeChat(req *ChatRequest) ([]uint32, error)
}

// ModelTokenizer is a tokenizer that serves several models and honours
// the request's context: Remote (vLLM's /tokenize, which picks the model by
// the request's "model"). An empty model means the tokenizer's own.
type ModelTokenizer interface {
	EncodeFor(ctx context.Context, model, text string, addSpecialTokens bool) ([]uint32, error)
	EncodeChatFor(ctx context.Context, model string, req *ChatRequest) ([]uint32, error)
}

// Local is a tokenizer that runs in process: a tokenizer.json encoder and
// the model's chat template. It is safe for concurrent use.
type Local struct {
	enc  *hf.Tokenizer
	chat *ChatTemplate // never nil; may hold no template
	// chatErr explains a template that failed to parse; chat requests
	// return it while completions keep working.
	chatErr error
	// special, when set, replaces the tokenizer.json post-processor with
	// the one transformers rebuilds for some tokenizer classes.
	special *specialTokens
}

// specialTokens is the BOS/EOS wrapping of transformers' Llama and Gemma
// fast tokenizers (update_post_processor from add_bos_token/add_eos_token).
type specialTokens struct {
	bos, eos       uint32
	addBOS, addEOS bool
}

var (
	_ ChatTokenizer = (*Local)(nil)
	_ ChatTokenizer = (*Pool)(nil)
	_ ChatTokenizer = (*Remote)(nil)

	_ ModelTokenizer = (*Remote)(nil)
	_ ModelTokenizer = (*Pool)(nil)
)

// Encode implements Tokenizer.
func (l *Local) Encode(text string, addSpecialTokens bool) ([]uint32, error) {
	if l.special == nil {
		return l.enc.Encode(text, addSpecialTokens)
	}
	if !addSpecialTokens {
		return l.enc.Encode(text, false)
	}
	var dst []uint32
	if l.special.addBOS {
		dst = append(dst, l.special.bos)
	}
	dst, err := l.enc.AppendEncode(dst, text, false)
	if err != nil {
		return nil, err
	}
	if l.special.addEOS {
		dst = append(dst, l.special.eos)
	}
	return dst, nil
}

// RenderChat returns the prompt text of a chat request.
func (l *Local) RenderChat(req *ChatRequest) (string, error) {
	if req.ChatTemplate == "" && l.chatErr != nil {
		return "", l.chatErr
	}
	return l.chat.Render(req)
}

// EncodeChat implements ChatTokenizer.
func (l *Local) EncodeChat(req *ChatRequest) ([]uint32, error) {
	text, err := l.RenderChat(req)
	if err != nil {
		return nil, err
	}
	return l.Encode(text, req.AddSpecialTokens)
}

// Encoder returns the underlying tokenizer.json encoder.
func (l *Local) Encoder() *hf.Tokenizer { return l.enc }

func errorf(format string, args ...any) error { return fmt.Errorf("tokenization: "+format, args...) }

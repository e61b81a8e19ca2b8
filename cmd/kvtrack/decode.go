package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/kvtrack/kvtrack/kvevents"
)

func init() {
	register(command{
		name:    "decode",
		summary: "print one vLLM KV-event payload file as JSON",
		run:     runDecode,
	})
}

const decodeSynopsis = `decode FILE

Decodes one KV-event batch payload (frame 3 of a vLLM publisher message, any
vLLM layout from v0.9.0 on, or SGLang's) and prints it as JSON with vLLM's
field names; block hashes print as unsigned 64-bit integers (bytes hashes as
their last 8 bytes, big-endian, as vLLM converts them). FILE "-" reads
standard input. Skipped unknown tags, unknown fields and malformed events are
reported on standard error.`

func runDecode(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("decode", decodeSynopsis, stdout, stderr)
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fs.usageError("want exactly one FILE, got %d arguments", fs.NArg())
	}
	name := fs.Arg(0)
	var payload []byte
	var err error
	if name == "-" {
		payload, err = io.ReadAll(os.Stdin)
	} else {
		payload, err = os.ReadFile(name)
	}
	if err != nil {
		return err
	}
	b, err := kvevents.NewDecoder().Decode(payload)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	warnSkipped(stderr, b)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(batchJSON(b))
}

func warnSkipped(w io.Writer, b *kvevents.Batch) {
	if b.UnknownTags+b.UnknownFields+b.MalformedEvents > 0 {
		fmt.Fprintf(w, "kvtrack: skipped %d events of unknown type, %d unknown fields, %d malformed events\n",
			b.UnknownTags, b.UnknownFields, b.MalformedEvents)
	}
}

// jsonBatch is vLLM's EventBatch with vLLM's field names.
type jsonBatch struct {
	TS     float64 `json:"ts"`
	DPRank *int    `json:"data_parallel_rank"`
	Events []any   `json:"events"`
}

type jsonStored struct {
	Type          string   `json:"type"`
	BlockHashes   []uint64 `json:"block_hashes"`
	Parent        *uint64  `json:"parent_block_hash"`
	TokenIDs      []uint32 `json:"token_ids"`
	BlockSize     int      `json:"block_size"`
	LoraID        *int64   `json:"lora_id"`
	Medium        *string  `json:"medium"`
	LoraName      *string  `json:"lora_name"`
	ExtraKeys     *[][]any `json:"extra_keys"`
	GroupIdx      *int     `json:"group_idx"`
	SpecKind      *string  `json:"kv_cache_spec_kind"`
	SlidingWindow *int64   `json:"kv_cache_spec_sliding_window"`
	Locality      *string  `json:"locality"`
}

type jsonRemoved struct {
	Type        string   `json:"type"`
	BlockHashes []uint64 `json:"block_hashes"`
	Medium      *string  `json:"medium"`
	GroupIdx    *int     `json:"group_idx"`
	Locality    *string  `json:"locality"`
}

type jsonCleared struct {
	Type string `json:"type"`
}

func batchJSON(b *kvevents.Batch) jsonBatch {
	out := jsonBatch{TS: b.TS, Events: make([]any, 0, len(b.Events))}
	if b.HasRank {
		out.DPRank = &b.DPRank
	}
	for i := range b.Events {
		out.Events = append(out.Events, eventJSON(&b.Events[i]))
	}
	return out
}

func optStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func eventJSON(e *kvevents.Event) any {
	hashes := append([]uint64{}, e.BlockHashes...)
	var group *int
	if e.HasGroupIdx {
		g := e.GroupIdx
		group = &g
	}
	switch e.Kind {
	case kvevents.BlockStored:
		j := jsonStored{
			Type: e.Kind.String(), BlockHashes: hashes, TokenIDs: append([]uint32{}, e.TokenIDs...), BlockSize: e.BlockSize,
			Medium: optStr(e.Medium), LoraName: optStr(e.LoraName), GroupIdx: group,
			SpecKind: optStr(e.SpecKind), Locality: optStr(e.Locality),
		}
		if e.HasParent {
			p := e.ParentHash
			j.Parent = &p
		}
		if e.HasLoraID {
			id := e.LoraID
			j.LoraID = &id
		}
		if e.HasSlidingWindow {
			w := e.SlidingWindow
			j.SlidingWindow = &w
		}
		if e.ExtraKeys != nil {
			extra := make([][]any, len(e.ExtraKeys))
			for i, block := range e.ExtraKeys {
				if block == nil {
					continue
				}
				extra[i] = make([]any, len(block))
				for k, item := range block {
					extra[i][k] = extraJSON(item)
				}
			}
			j.ExtraKeys = &extra
		}
		return j
	case kvevents.BlockRemoved:
		return jsonRemoved{Type: e.Kind.String(), BlockHashes: hashes, Medium: optStr(e.Medium), GroupIdx: group, Locality: optStr(e.Locality)}
	}
	return jsonCleared{Type: e.Kind.String()}
}

// extraJSON renders an extra-key item as msgpack carried it; bytes, which
// JSON lacks, as {"$bin_hex": "..."} like the project's sample files.
func extraJSON(k kvevents.ExtraKey) any {
	switch k.Kind {
	case kvevents.ExtraStr:
		return k.Str
	case kvevents.ExtraInt:
		return k.Int
	case kvevents.ExtraMM:
		return []any{k.Str, k.Int}
	case kvevents.ExtraBytes:
		return map[string]string{"$bin_hex": hex.EncodeToString(k.Bytes)}
	}
	return nil
}

package kvevents

import (
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// logLines collects log lines for assertions.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) option() Option {
	return WithLogger(funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, args)
	}, funcr.Options{}))
}

func (l *logLines) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// The sample payloads' blocks hash, with sha256_cbor, seed "42" and block
// size 16, to sampleHash0 and sampleHash1 (vllm-hash-vectors.json).
func TestHashCheck(t *testing.T) {
	tests := []struct {
		name          string
		hash          blockhash.HashConfig
		wantMismatch  uint64
		wantDiagnosis string
	}{
		{"matching config", blockhash.HashConfig{Algorithm: blockhash.SHA256CBOR, Seed: "42", BlockSize: 16}, 0, ""},
		{"wrong seed", blockhash.HashConfig{Algorithm: blockhash.SHA256CBOR, Seed: "0", BlockSize: 16}, 2, "PYTHONHASHSEED"},
		{"wrong algorithm", blockhash.HashConfig{Algorithm: blockhash.SHA256, Seed: "42", BlockSize: 16}, 2, `sha256_cbor`},
		{"wrong block size", blockhash.HashConfig{Algorithm: blockhash.SHA256CBOR, Seed: "42", BlockSize: 32}, 2, "--block-size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := newRefIndex()
			var logs logLines
			p := startPool(t, Config{Mode: ModeConnect, Hash: tt.hash}, idx, logs.option())
			pub := newGoPublisher(t, pubOpts{})
			addPub(t, p, pub)
			root := func() mp { return pub.stored([]uint64{sampleHash0, sampleHash1}, 0, seqTokens(100, 32), "GPU") }
			pub.publish(false, root())
			pub.publish(false, root())
			// A store that continues a chain cannot be checked on its own.
			pub.publish(false, pub.stored([]uint64{12345}, sampleHash1, seqTokens(132, 16), "GPU"))
			waitIndexEquals(t, idx, pub.groundTruth)
			if got := p.Stats().HashMismatches; got != tt.wantMismatch {
				t.Errorf("HashMismatches = %d, want %d", got, tt.wantMismatch)
			}
			warned := logs.count("do not match")
			switch {
			case tt.wantMismatch == 0 && warned != 0:
				t.Errorf("logged %d hash warnings for matching hashes", warned)
			case tt.wantMismatch > 0 && warned != 1:
				t.Errorf("logged %d hash warnings, want exactly 1 per pod", warned)
			case tt.wantMismatch > 0 && logs.count(tt.wantDiagnosis) == 0:
				t.Errorf("hash warning does not name %q:\n%s", tt.wantDiagnosis, strings.Join(logs.lines, "\n"))
			}
		})
	}
}

func TestTokensScheme(t *testing.T) {
	idx := newRefIndex()
	p := startPool(t, Config{Mode: ModeConnect, KeyScheme: SchemeTokens}, idx)
	pub := newGoPublisher(t, pubOpts{})
	addPub(t, p, pub)

	th, err := blockhash.NewTokenHasher(16)
	if err != nil {
		t.Fatal(err)
	}
	tokA, tokB := seqTokens(1000, 32), seqTokens(2000, 16)
	keysA, _ := th.BlockKeys(nil, 0, tokA, nil)
	keysB, _ := th.BlockKeys(nil, keysA[1], tokB, nil)

	// Engine hashes are opaque here: random-looking values that the scheme
	// must map to token-derived keys.
	pub.publish(false, pub.stored([]uint64{0xa0, 0xa1}, 0, tokA, "GPU"))
	pub.publish(false, pub.stored([]uint64{0xb0}, 0xa1, tokB, "GPU"))
	pub.publish(false, pub.removed([]uint64{0xa0}, "GPU"))
	pub.publish(false, pub.removed([]uint64{0xdead}, "GPU")) // never stored: unresolved
	want := map[refEntry]int{
		{pub.pod, kvblock.TierGPU, keysA[1]}: 1,
		{pub.pod, kvblock.TierGPU, keysB[0]}: 1,
	}
	waitIndexEquals(t, idx, func() map[refEntry]int { return want })
	eventually(t, "the unknown remove to be counted", func() bool { return p.Stats().Unresolved == 1 })
}

func TestEngineKeysBounded(t *testing.T) {
	e := newEngineKeys(64)
	for h := range uint64(1000) {
		e.put(h, kvblock.Key(h+1))
	}
	if len(e.m) > 64 {
		t.Errorf("map holds %d entries, bound is 64", len(e.m))
	}
	e.put(5000, 1)
	e.put(5000, 1)
	if _, ok := e.release(5000); !ok {
		t.Fatal("release of a stored hash failed")
	}
	if k, ok := e.get(5000); !ok || k != 1 {
		t.Errorf("after one release of two refs: get = %d, %v; want 1, true", k, ok)
	}
	e.release(5000)
	if _, ok := e.get(5000); ok {
		t.Error("mapping survived its last release")
	}
}

// TestEventMediaUseTheConfiguredTable: media the table names get their
// tiers; others (and SPECULATIVE, which is the router's own) are applied as
// TierOther and counted, and however many a publisher invents, they share
// that one tier.
func TestEventMediaUseTheConfiguredTable(t *testing.T) {
	media := kvblock.NewMedia("NVME")
	nvme, _ := media.Tier("NVME")
	idx := newRefIndex()
	p := startPool(t, Config{Mode: ModeConnect, Media: media}, idx)
	pub := newGoPublisher(t, pubOpts{})
	addPub(t, p, pub)
	tokens := seqTokens(0, 16)
	pub.publish(false,
		pub.stored([]uint64{1}, 0, tokens, "NVME"),
		pub.stored([]uint64{2}, 0, tokens, "CPU"),
		pub.stored([]uint64{3}, 0, tokens, "INVENTED-1"),
		pub.stored([]uint64{4}, 0, tokens, "INVENTED-2"),
		pub.stored([]uint64{5}, 0, tokens, "SPECULATIVE"),
	)
	want := map[refEntry]int{
		{pub.pod, nvme, 1}:              1,
		{pub.pod, kvblock.TierCPU, 2}:   1,
		{pub.pod, kvblock.TierOther, 3}: 1,
		{pub.pod, kvblock.TierOther, 4}: 1,
		{pub.pod, kvblock.TierOther, 5}: 1,
	}
	waitIndexEquals(t, idx, func() map[refEntry]int { return want })
	if got := p.Stats().UnknownMedia; got != 3 {
		t.Errorf("UnknownMedia = %d, want 3", got)
	}
}

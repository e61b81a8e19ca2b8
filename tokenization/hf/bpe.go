package hf

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// bpe is the BPE model of tokenizer.json, following the Rust crate's
// BPE::merge_word and Word::merge_all.
type bpe struct {
	vocab        map[string]uint32
	merges       mergeMap
	unk          int64 // unk token ID, or -1
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix
	// byteFallbackIDs[b] is the ID of "<0xNN>", or -1.
	byteFallbackIDs [256]int64

	// Byte mode: the words are raw bytes and the model applies the GPT-2
	// byte-to-character map itself, through byteIDs and rawVocab, instead
	// of the pre-tokenizer building mapped strings.
	byteMode bool
	byteIDs  [256]uint32
	// bytePairs[a<<8|b] is the merge of the byte tokens of a and b
	// (rank<<32 | newID), or noMerge: the first round of lookups of a word
	// hits this 512 KiB table instead of the large merge map.
	bytePairs []uint64
	rawVocab  map[string]uint32 // vocab keyed by the unmapped bytes

	cache *wordCache
}

func newBPE(m *modelJSON) (*bpe, error) {
	if m.Type != "BPE" && m.Type != "" {
		return nil, &unsupportedError{"model", m.Type}
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return nil, fmt.Errorf("%w: BPE dropout %v (non-deterministic)", ErrUnsupported, *m.Dropout)
	}
	vocab, err := parseVocab(m.Vocab)
	if err != nil {
		return nil, err
	}
	b := &bpe{vocab: vocab, unk: -1, fuseUnk: m.FuseUnk, byteFallback: m.ByteFallback, ignoreMerges: m.IgnoreMerges}
	if m.ContinuingSubwordPrefix != nil {
		b.prefix = *m.ContinuingSubwordPrefix
	}
	if m.EndOfWordSuffix != nil {
		b.suffix = *m.EndOfWordSuffix
	}
	if m.UnkToken != nil {
		id, ok := b.vocab[*m.UnkToken]
		if !ok {
			return nil, fmt.Errorf("tokenizer.json: model.unk_token %q is not in the vocabulary", *m.UnkToken)
		}
		b.unk = int64(id)
	}
	for i := range b.byteFallbackIDs {
		b.byteFallbackIDs[i] = -1
		if id, ok := b.vocab[fmt.Sprintf("<0x%02X>", i)]; ok {
			b.byteFallbackIDs[i] = int64(id)
		}
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	b.merges = newMergeMap(len(merges))
	for rank, mg := range merges {
		a, ok1 := b.vocab[mg[0]]
		c, ok2 := b.vocab[mg[1]]
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("tokenizer.json: merge %d (%q %q) uses a token missing from the vocabulary", rank, mg[0], mg[1])
		}
		if len(b.prefix) > len(mg[1]) {
			return nil, fmt.Errorf("tokenizer.json: merge %d: %q is shorter than continuing_subword_prefix", rank, mg[1])
		}
		merged := mg[0] + mg[1][len(b.prefix):]
		id, ok := b.vocab[merged]
		if !ok {
			return nil, fmt.Errorf("tokenizer.json: merge %d makes %q, which is missing from the vocabulary", rank, merged)
		}
		b.merges.put(a, c, uint32(rank), id)
	}
	return b, nil
}

// enableByteMode switches the model to raw-byte words when the vocabulary
// covers all 256 byte characters and no affixes complicate the mapping.
func (b *bpe) enableByteMode() bool {
	if b.prefix != "" || b.suffix != "" {
		return false
	}
	for i := range 256 {
		id, ok := b.vocab[string(byteChar[i])]
		if !ok {
			return false
		}
		b.byteIDs[i] = id
	}
	b.bytePairs = make([]uint64, 1<<16)
	for i := range b.bytePairs {
		b.bytePairs[i] = noMerge
		if rank, id, ok := b.merges.get(b.byteIDs[i>>8], b.byteIDs[i&0xff]); ok {
			b.bytePairs[i] = uint64(rank)<<32 | uint64(id)
		}
	}
	if b.ignoreMerges {
		b.rawVocab = make(map[string]uint32, len(b.vocab))
		buf := make([]byte, 0, 64)
		for tok, id := range b.vocab {
			if raw, ok := unmapBytes(buf[:0], tok); ok {
				b.rawVocab[string(raw)] = id
			}
		}
	}
	b.byteMode = true
	return true
}

// unmapBytes inverts the byte-to-character map; ok is false when tok holds a
// character outside it.
func unmapBytes(dst []byte, tok string) ([]byte, bool) {
	for _, r := range tok {
		if r >= rune(len(charByte)) || charByte[r] < 0 {
			return nil, false
		}
		dst = append(dst, byte(charByte[r]))
	}
	return dst, true
}

// maxCachedWord bounds the words the cache holds, as the Rust crate does:
// long words are rare and would crowd out the common ones.
const maxCachedWord = 256

// tokenize appends the IDs of one pre-tokenized word to dst.
func (b *bpe) tokenize(dst []uint32, word string, st *scratch) []uint32 {
	if word == "" {
		return dst
	}
	if b.ignoreMerges {
		v := b.vocab
		if b.byteMode {
			v = b.rawVocab
		}
		if id, ok := v[word]; ok {
			return append(dst, id)
		}
	}
	cacheable := b.cache != nil && len(word) <= maxCachedWord
	if cacheable {
		if out, ok := b.cache.get(dst, word); ok {
			return out
		}
	}
	n := len(dst)
	syms := b.initialSymbols(st.syms[:0], word)
	syms = b.mergeAll(syms, word, st)
	for i := 0; i >= 0 && i < len(syms); i = int(syms[i].next) {
		dst = append(dst, syms[i].id)
	}
	st.syms = syms
	if cacheable {
		b.cache.put(word, dst[n:])
	}
	return dst
}

// symbol is one node of the doubly linked list of a word being merged.
type symbol struct {
	id         uint32
	prev, next int32
	dead       bool
}

func appendSymbol(syms []symbol, id uint32) []symbol {
	i := int32(len(syms))
	return append(syms, symbol{id: id, prev: i - 1, next: i + 1})
}

// initialSymbols splits a word into its first symbols: one per byte in byte
// mode, otherwise one per character with the affixes, byte fallback and
// unknown-token rules of the crate's merge_word.
func (b *bpe) initialSymbols(syms []symbol, w string) []symbol {
	if b.byteMode {
		for i := 0; i < len(w); i++ {
			syms = appendSymbol(syms, b.byteIDs[w[i]])
		}
		return finishSymbols(syms)
	}
	unkPending := false
	var unkID uint32
	var sb strings.Builder
	for i := 0; i < len(w); {
		_, size := utf8.DecodeRuneInString(w[i:])
		s := w[i : i+size]
		if (i > 0 && b.prefix != "") || (i+size == len(w) && b.suffix != "") {
			sb.Reset()
			if i > 0 {
				sb.WriteString(b.prefix)
			}
			sb.WriteString(s)
			if i+size == len(w) {
				sb.WriteString(b.suffix)
			}
			s = sb.String()
		}
		i += size
		if id, ok := b.vocab[s]; ok {
			if unkPending {
				syms = appendSymbol(syms, unkID)
				unkPending = false
			}
			syms = appendSymbol(syms, id)
			continue
		}
		if b.byteFallback && b.hasByteFallback(s) {
			// As in the crate, a pending unknown token is not flushed here.
			for j := 0; j < len(s); j++ {
				syms = appendSymbol(syms, uint32(b.byteFallbackIDs[s[j]]))
			}
			continue
		}
		if b.unk >= 0 {
			if unkPending && !b.fuseUnk {
				syms = appendSymbol(syms, unkID)
			}
			unkPending, unkID = true, uint32(b.unk)
		}
	}
	if unkPending {
		syms = appendSymbol(syms, unkID)
	}
	return finishSymbols(syms)
}

func (b *bpe) hasByteFallback(s string) bool {
	for j := 0; j < len(s); j++ {
		if b.byteFallbackIDs[s[j]] < 0 {
			return false
		}
	}
	return true
}

func finishSymbols(syms []symbol) []symbol {
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}
	return syms
}

// candidate is a queued merge of the symbol at pos with its right neighbour.
type candidate struct {
	rank, pos, newID uint32
}

func (c candidate) less(d candidate) bool {
	return c.rank < d.rank || c.rank == d.rank && c.pos < d.pos
}

// mergeAll applies merges lowest (rank, position) first, as Word::merge_all
// does with its binary heap; stale queue entries are recognised by the ID
// the pair would now merge into.
func (b *bpe) mergeAll(syms []symbol, word string, st *scratch) []symbol {
	if len(syms) < 2 {
		return syms
	}
	h := st.heap[:0]
	if b.byteMode {
		for i := 0; i+1 < len(syms); i++ {
			if v := b.bytePairs[int(word[i])<<8|int(word[i+1])]; v != noMerge {
				h = heapPush(h, candidate{uint32(v >> 32), uint32(i), uint32(v)})
			}
		}
	} else {
		for i := 0; i+1 < len(syms); i++ {
			if rank, id, ok := b.merges.get(syms[i].id, syms[i+1].id); ok {
				h = heapPush(h, candidate{rank, uint32(i), id})
			}
		}
	}
	for len(h) > 0 {
		var top candidate
		top, h = heapPop(h)
		cur := &syms[top.pos]
		if cur.dead || cur.next < 0 {
			continue
		}
		right := syms[cur.next]
		if _, id, ok := b.merges.get(cur.id, right.id); !ok || id != top.newID {
			continue
		}
		cur.id = top.newID
		syms[cur.next].dead = true
		cur.next = right.next
		if right.next >= 0 {
			syms[right.next].prev = int32(top.pos)
		}
		if cur.prev >= 0 {
			if rank, id, ok := b.merges.get(syms[cur.prev].id, cur.id); ok {
				h = heapPush(h, candidate{rank, uint32(cur.prev), id})
			}
		}
		if cur.next >= 0 {
			if rank, id, ok := b.merges.get(cur.id, syms[cur.next].id); ok {
				h = heapPush(h, candidate{rank, top.pos, id})
			}
		}
	}
	st.heap = h
	return syms
}

func heapPush(h []candidate, c candidate) []candidate {
	h = append(h, c)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].less(h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	return h
}

func heapPop(h []candidate) (candidate, []candidate) {
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if r := l + 1; r < len(h) && h[r].less(h[l]) {
			m = r
		}
		if !h[m].less(h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	return top, h
}

// mergeMap maps a pair of token IDs to the merge's rank and result, in an
// open-addressing table of plain words: no pointers for the GC to scan and
// one cache line per probe.
type mergeMap struct {
	slots []mergeSlot
	mask  uint64
}

type mergeSlot struct {
	key uint64 // a<<32 | b, or emptyKey
	val uint64 // rank<<32 | newID
}

const emptyKey = ^uint64(0)

// noMerge marks a byte pair without a merge.
const noMerge = ^uint64(0)

func newMergeMap(n int) mergeMap {
	size := 16
	for size < 2*n {
		size <<= 1
	}
	m := mergeMap{slots: make([]mergeSlot, size), mask: uint64(size - 1)}
	for i := range m.slots {
		m.slots[i].key = emptyKey
	}
	return m
}

func mixPair(k uint64) uint64 {
	k *= 0x9E3779B97F4A7C15
	return k ^ k>>29
}

// put records a merge; a later duplicate pair replaces the earlier one, as
// collecting into the crate's HashMap does.
func (m *mergeMap) put(a, b, rank, id uint32) {
	k := uint64(a)<<32 | uint64(b)
	for i := mixPair(k) & m.mask; ; i = (i + 1) & m.mask {
		s := &m.slots[i]
		if s.key == emptyKey || s.key == k {
			s.key, s.val = k, uint64(rank)<<32|uint64(id)
			return
		}
	}
}

func (m *mergeMap) get(a, b uint32) (rank, id uint32, ok bool) {
	if len(m.slots) == 0 {
		return 0, 0, false
	}
	k := uint64(a)<<32 | uint64(b)
	for i := mixPair(k) & m.mask; ; i = (i + 1) & m.mask {
		s := &m.slots[i]
		if s.key == k {
			return uint32(s.val >> 32), uint32(s.val), true
		}
		if s.key == emptyKey {
			return 0, 0, false
		}
	}
}

// byteChar is GPT-2's byte-to-unicode map; charByte its inverse (-1 where
// a rune is not in the image).
var byteChar, charByte = func() (bc [256]rune, cb [324]int16) {
	for i := range cb {
		cb[i] = -1
	}
	n := 0
	for b := range 256 {
		if '!' <= b && b <= '~' || 0xA1 <= b && b <= 0xAC || 0xAE <= b && b <= 0xFF {
			bc[b] = rune(b)
		} else {
			bc[b] = rune(256 + n)
			n++
		}
		cb[bc[b]] = int16(b)
	}
	return bc, cb
}()

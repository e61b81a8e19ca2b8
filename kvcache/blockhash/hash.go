package blockhash

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/zeebo/xxh3"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// Algorithm names a vLLM prefix-caching hash algorithm, as given to vLLM's
// --prefix-caching-hash-algo.
type Algorithm string

// The algorithms vLLM has shipped whose hashes can be reproduced.
const (
	// SHA256 is vLLM's default since v0.10.2: SHA-256 over pickle protocol 5.
	SHA256 Algorithm = "sha256"
	// SHA256CBOR is SHA-256 over canonical CBOR (v0.10.2+).
	SHA256CBOR Algorithm = "sha256_cbor"
	// XXHash is XXH3-128 over pickle protocol 5 (about v0.13+).
	XXHash Algorithm = "xxhash"
	// XXHashCBOR is XXH3-128 over canonical CBOR (about v0.13+).
	XXHashCBOR Algorithm = "xxhash_cbor"
	// SHA256CBOR64 is the 64-bit SHA-256-over-CBOR of vLLM v0.10.0-v0.10.1,
	// whose chain carries the parent as a 64-bit integer.
	SHA256CBOR64 Algorithm = "sha256_cbor_64bit"
)

// Algorithms returns every supported algorithm, vLLM's default first.
func Algorithms() []Algorithm {
	return []Algorithm{SHA256, SHA256CBOR, XXHash, XXHashCBOR, SHA256CBOR64}
}

func algorithmChoices() string {
	names := make([]string, 0, 5)
	for _, a := range Algorithms() {
		names = append(names, string(a))
	}
	return strings.Join(names, ", ")
}

// ParseAlgorithm returns the algorithm named s, or an error listing the
// valid names.
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range Algorithms() {
		if string(a) == s {
			return a, nil
		}
	}
	if s == "builtin" {
		return "", fmt.Errorf("blockhash: hash algorithm %q (vLLM before v0.10.2) hashes with CPython's hash() and cannot be reproduced; use the tokens key scheme, or one of: %s", s, algorithmChoices())
	}
	return "", fmt.Errorf("blockhash: unknown hash algorithm %q; valid: %s", s, algorithmChoices())
}

// HashConfig says how a vLLM deployment hashes its prefix-cache blocks. All
// three fields must equal the engine's, or no key will ever match.
type HashConfig struct {
	// Algorithm is vLLM's --prefix-caching-hash-algo; empty means SHA256,
	// vLLM's default.
	Algorithm Algorithm `json:"algorithm,omitempty"`
	// Seed is the engine's PYTHONHASHSEED string ("0" is the string "0").
	// An engine without PYTHONHASHSEED seeds its chain randomly and its
	// hashes cannot be reproduced.
	Seed string `json:"seed"`
	// BlockSize is vLLM's --block-size (the hashing block size), in tokens.
	BlockSize int `json:"blockSize"`
}

// Hasher computes the block keys vLLM publishes for a token sequence. It is
// safe for concurrent use.
type Hasher struct {
	cfg    HashConfig
	none   [32]byte // NONE_HASH: the digest of the serialized seed
	nlen   int      // digest length: 32 (sha256*) or 16 (xxhash*)
	none64 uint64   // NONE_HASH for SHA256CBOR64
}

// NewHasher validates cfg and returns a Hasher for it.
func NewHasher(cfg HashConfig) (*Hasher, error) {
	if cfg.Algorithm == "" {
		cfg.Algorithm = SHA256
	}
	if _, err := ParseAlgorithm(string(cfg.Algorithm)); err != nil {
		return nil, err
	}
	if cfg.BlockSize <= 0 {
		return nil, fmt.Errorf("blockhash: block size %d: must be a positive number of tokens (vLLM's --block-size, 16 by default on CUDA)", cfg.BlockSize)
	}
	h := &Hasher{cfg: cfg}
	switch cfg.Algorithm {
	case SHA256:
		h.none, h.nlen = sha256.Sum256(pickleStr(nil, cfg.Seed)), 32
	case SHA256CBOR:
		h.none, h.nlen = sha256.Sum256(cborText1(nil, cfg.Seed)), 32
	case XXHash:
		d := xxh3.Hash128(pickleStr(nil, cfg.Seed)).Bytes()
		copy(h.none[:], d[:])
		h.nlen = 16
	case XXHashCBOR:
		d := xxh3.Hash128(cborText1(nil, cfg.Seed)).Bytes()
		copy(h.none[:], d[:])
		h.nlen = 16
	case SHA256CBOR64:
		d := sha256.Sum256(cborText1(nil, cfg.Seed))
		h.none64 = binary.BigEndian.Uint64(d[24:])
		binary.BigEndian.PutUint64(h.none[:8], h.none64)
		h.nlen = 8
	}
	return h, nil
}

// Config returns the configuration the Hasher was built with, defaults
// filled in.
func (h *Hasher) Config() HashConfig { return h.cfg }

// NoneHash returns the root of every chain: the digest of the serialized
// seed (8 big-endian bytes for SHA256CBOR64).
func (h *Hasher) NoneHash() []byte { return append([]byte(nil), h.none[:h.nlen]...) }

// ErrExtraKeys reports extra keys that do not fit the tokens they go with.
var ErrExtraKeys = errors.New("blockhash: malformed extra keys")

// scratch buffers for serialization, so BlockKeys allocates nothing in
// steady state.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Digest is a block's full chain digest: what vLLM passes to the next
// block as its parent. Only the first DigestLen bytes are used: 32 for the
// sha256 algorithms, 16 for xxhash, 8 (the big-endian 64-bit hash) for
// SHA256CBOR64. A block's Key is derived from its Digest, but the chain
// cannot be continued from a Key alone (except with SHA256CBOR64), which is
// why callers that resume chains keep Digests.
type Digest [32]byte

// DigestLen returns how many leading bytes of a Digest are significant.
func (h *Hasher) DigestLen() int { return h.nlen }

// Root returns the digest every chain starts from (NONE_HASH).
func (h *Hasher) Root() Digest { return h.none }

// BlockKeys appends to dst the key of every full block of tokens, chained
// from the root exactly as vLLM chains them, and returns the extended slice.
// A trailing partial block is not hashed (vLLM caches only full blocks).
//
// extra is nil, or has at least one entry per full block: entry i holds
// block i's extra keys, nil for none (see RequestExtras.PerBlock).
func (h *Hasher) BlockKeys(dst []kvblock.Key, tokens []uint32, extra [][]ExtraKey) ([]kvblock.Key, error) {
	bs := h.cfg.BlockSize
	n := len(tokens) / bs
	if err := checkExtra(extra, n); err != nil {
		return dst, err
	}
	if n == 0 {
		return dst, nil
	}
	bp := scratch.Get().(*[]byte)
	buf := *bp
	var parent [32]byte
	copy(parent[:], h.none[:h.nlen])
	parent64 := h.none64
	for i := range n {
		var ex []ExtraKey
		if extra != nil {
			ex = extra[i]
		}
		block := tokens[i*bs : (i+1)*bs]
		var key uint64
		switch h.cfg.Algorithm {
		case SHA256:
			buf = pickleBlock(buf[:0], parent[:32], block, ex)
			parent = sha256.Sum256(buf)
			key = binary.BigEndian.Uint64(parent[24:32])
		case SHA256CBOR:
			buf = cborBlock(buf[:0], parent[:32], block, ex)
			parent = sha256.Sum256(buf)
			key = binary.BigEndian.Uint64(parent[24:32])
		case XXHash:
			buf = pickleBlock(buf[:0], parent[:16], block, ex)
			d := xxh3.Hash128(buf)
			binary.BigEndian.PutUint64(parent[:8], d.Hi)
			binary.BigEndian.PutUint64(parent[8:16], d.Lo)
			key = d.Lo
		case XXHashCBOR:
			buf = cborBlock(buf[:0], parent[:16], block, ex)
			d := xxh3.Hash128(buf)
			binary.BigEndian.PutUint64(parent[:8], d.Hi)
			binary.BigEndian.PutUint64(parent[8:16], d.Lo)
			key = d.Lo
		case SHA256CBOR64:
			buf = cborBlock64(buf[:0], parent64, block, ex)
			d := sha256.Sum256(buf)
			parent64 = binary.BigEndian.Uint64(d[24:32])
			key = parent64
		}
		dst = append(dst, kvblock.Key(key))
	}
	*bp = buf
	scratch.Put(bp)
	return dst, nil
}

// BlockDigests is BlockKeys continued from parent, the Digest of the block
// before tokens[0] (Root for a sequence that starts at the root): it
// appends every full block's key to keys and its Digest to digests. Hashing
// a sequence in two parts, the second from the first's last Digest, gives
// the keys of hashing it in one pass; extra is indexed from tokens[0].
func (h *Hasher) BlockDigests(keys []kvblock.Key, digests []Digest, parent Digest, tokens []uint32, extra [][]ExtraKey) ([]kvblock.Key, []Digest, error) {
	bs := h.cfg.BlockSize
	n := len(tokens) / bs
	if err := checkExtra(extra, n); err != nil || n == 0 {
		return keys, digests, err
	}
	bp := scratch.Get().(*[]byte)
	buf := *bp
	for i := range n {
		var key uint64
		buf, key = h.hashBlock(buf, &parent, tokens[i*bs:(i+1)*bs], blockExtra(extra, i))
		keys = append(keys, kvblock.Key(key))
		digests = append(digests, parent)
	}
	*bp = buf
	scratch.Put(bp)
	return keys, digests, nil
}

func blockExtra(extra [][]ExtraKey, i int) []ExtraKey {
	if extra == nil {
		return nil
	}
	return extra[i]
}

// hashBlock replaces *parent with the Digest of block chained after it and
// returns the block's key; buf is scratch for the serialization. BlockKeys
// keeps its own inline copy of this switch, as a call per block costs it a
// few percent (BenchmarkHashBlocks); TestBlockDigests* hold the two equal.
func (h *Hasher) hashBlock(buf []byte, parent *Digest, block []uint32, ex []ExtraKey) ([]byte, uint64) {
	switch h.cfg.Algorithm {
	case SHA256:
		buf = pickleBlock(buf[:0], parent[:32], block, ex)
		*parent = sha256.Sum256(buf)
		return buf, binary.BigEndian.Uint64(parent[24:32])
	case SHA256CBOR:
		buf = cborBlock(buf[:0], parent[:32], block, ex)
		*parent = sha256.Sum256(buf)
		return buf, binary.BigEndian.Uint64(parent[24:32])
	case XXHash, XXHashCBOR:
		if h.cfg.Algorithm == XXHash {
			buf = pickleBlock(buf[:0], parent[:16], block, ex)
		} else {
			buf = cborBlock(buf[:0], parent[:16], block, ex)
		}
		d := xxh3.Hash128(buf)
		binary.BigEndian.PutUint64(parent[:8], d.Hi)
		binary.BigEndian.PutUint64(parent[8:16], d.Lo)
		return buf, d.Lo
	default: // SHA256CBOR64: the parent is the 64-bit hash, big-endian
		buf = cborBlock64(buf[:0], binary.BigEndian.Uint64(parent[:8]), block, ex)
		d := sha256.Sum256(buf)
		key := binary.BigEndian.Uint64(d[24:32])
		binary.BigEndian.PutUint64(parent[:8], key)
		return buf, key
	}
}

// checkExtra validates per-block extra keys for n full blocks.
func checkExtra(extra [][]ExtraKey, n int) error {
	if extra == nil {
		return nil
	}
	if len(extra) < n {
		return fmt.Errorf("%w: %d entries for %d full blocks; pass nil or one entry per block", ErrExtraKeys, len(extra), n)
	}
	for i := range n {
		for j, k := range extra[i] {
			if k.kind == extraInvalid {
				return fmt.Errorf("%w: block %d item %d is the zero ExtraKey; build items with ExtraString, ExtraInt, ExtraMM or ExtraBytes", ErrExtraKeys, i, j)
			}
		}
	}
	return nil
}

// TokenHasher derives block keys from token IDs alone, with a fast chained
// 64-bit hash: key = XXH3-64(tokens, extra keys) seeded with the parent key.
// It is the key scheme for engines whose own hashes cannot be reproduced
// (vLLM without a fixed PYTHONHASHSEED, SGLang, TensorRT-LLM): events are
// re-keyed from their token_ids, and requests are keyed the same way.
// It is safe for concurrent use.
type TokenHasher struct {
	blockSize int
}

// NewTokenHasher returns a TokenHasher for blocks of blockSize tokens.
func NewTokenHasher(blockSize int) (*TokenHasher, error) {
	if blockSize <= 0 {
		return nil, fmt.Errorf("blockhash: block size %d: must be a positive number of tokens", blockSize)
	}
	return &TokenHasher{blockSize: blockSize}, nil
}

// BlockSize returns the number of tokens per block.
func (h *TokenHasher) BlockSize() int { return h.blockSize }

// tokenRoot seeds chains that start at the root, so that a root block's key
// differs from the same tokens chained after a parent whose key is 0.
const tokenRoot = 0x6b7674726b726f6f // "kvtrkroo"

// BlockKeys appends to dst the key of every full block of tokens, chained
// from parent (0 for a sequence that starts at the root), and returns the
// extended slice. extra follows Hasher.BlockKeys's rules. Keys are never 0.
func (h *TokenHasher) BlockKeys(dst []kvblock.Key, parent kvblock.Key, tokens []uint32, extra [][]ExtraKey) ([]kvblock.Key, error) {
	bs := h.blockSize
	n := len(tokens) / bs
	if err := checkExtra(extra, n); err != nil {
		return dst, err
	}
	if n == 0 {
		return dst, nil
	}
	bp := scratch.Get().(*[]byte)
	buf := *bp
	seed := uint64(parent)
	if parent == 0 {
		seed = tokenRoot
	}
	for i := range n {
		block := tokens[i*bs : (i+1)*bs]
		var k uint64
		if extra == nil || extra[i] == nil {
			k = xxh3.HashSeed(tokenBytes(buf[:0], block), seed)
		} else {
			buf = tokenBytesCopy(buf[:0], block)
			buf = cborExtra(append(buf, 0xff), extra[i])
			k = xxh3.HashSeed(buf, seed)
		}
		if k == 0 {
			k = 1
		}
		dst = append(dst, kvblock.Key(k))
		seed = k
	}
	*bp = buf
	scratch.Put(bp)
	return dst, nil
}

// littleEndian is true where a []uint32's memory is its little-endian
// encoding, so token bytes can be hashed in place.
var littleEndian = func() bool {
	x := uint32(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// tokenBytes returns the little-endian bytes of tokens: the tokens' own
// memory where the machine is little-endian, else an encoding into buf.
func tokenBytes(buf []byte, tokens []uint32) []byte {
	if littleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(tokens))), 4*len(tokens))
	}
	return tokenBytesCopy(buf, tokens)
}

func tokenBytesCopy(buf []byte, tokens []uint32) []byte {
	for _, t := range tokens {
		buf = binary.LittleEndian.AppendUint32(buf, t)
	}
	return buf
}

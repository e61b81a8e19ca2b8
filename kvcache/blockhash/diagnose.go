package blockhash

import (
	"fmt"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// HashVerdict is the outcome of checking published block hashes against a
// HashConfig.
type HashVerdict int

const (
	// HashMatch: the configuration reproduces the published hashes.
	HashMatch HashVerdict = iota
	// HashOtherAlgorithm: another algorithm, with the configured seed and
	// block size, reproduces them; Diagnosis.Algorithm names it.
	HashOtherAlgorithm
	// HashBlockSize: the engine hashes blocks of another size
	// (Diagnosis.BlockSize).
	HashBlockSize
	// HashSeedOrExtras: no algorithm reproduces them with the configured
	// seed and block size: the engine's PYTHONHASHSEED differs (or is
	// unset, which seeds randomly), or the block carried extra keys the
	// check did not know.
	HashSeedOrExtras
	// HashNotComparable: nothing to compare (no full block, or a store that
	// does not start at the root).
	HashNotComparable
)

var verdictNames = [...]string{"match", "other-algorithm", "block-size", "seed-or-extras", "not-comparable"}

func (v HashVerdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("HashVerdict(%d)", int(v))
}

// HashDiagnosis explains why published hashes do or do not match.
type HashDiagnosis struct {
	Verdict   HashVerdict
	Algorithm Algorithm // the algorithm that matched (HashMatch, HashOtherAlgorithm)
	BlockSize int       // the engine's block size (HashBlockSize)
	// FirstMismatch is the first block whose key differs under the
	// configured algorithm, or -1.
	FirstMismatch int
}

// Fix returns the configuration change that would make the keys match, in
// words an operator can act on, or "" when none is needed or known.
func (d HashDiagnosis) Fix() string {
	switch d.Verdict {
	case HashOtherAlgorithm:
		return fmt.Sprintf("set the hash algorithm to %q (the engine's --prefix-caching-hash-algo)", d.Algorithm)
	case HashBlockSize:
		return fmt.Sprintf("set the block size to %d (the engine's --block-size)", d.BlockSize)
	case HashSeedOrExtras:
		return "set the hash seed to the engine's PYTHONHASHSEED (it must be set, and equal, on every vLLM pod); if it is unset, set it on the pods or use the tokens key scheme"
	}
	return ""
}

// DiagnoseHashes checks the hashes an engine published for a store that
// starts at the root (parent none) against cfg. tokens and extra are the
// event's token_ids and extra_keys; engineBlockSize is the event's
// block_size, or 0 if absent, in which case it is inferred from the event
// (token_ids holds exactly the stored blocks' tokens).
func DiagnoseHashes(cfg HashConfig, engineBlockSize int, tokens []uint32, extra [][]ExtraKey, published []kvblock.Key) HashDiagnosis {
	d := HashDiagnosis{Verdict: HashNotComparable, FirstMismatch: -1}
	if len(published) == 0 {
		return d
	}
	if engineBlockSize <= 0 && len(tokens) > 0 && len(tokens)%len(published) == 0 {
		engineBlockSize = len(tokens) / len(published)
	}
	if engineBlockSize > 0 && cfg.BlockSize != engineBlockSize {
		d.Verdict, d.BlockSize = HashBlockSize, engineBlockSize
		return d
	}
	configured, err := NewHasher(cfg)
	if err != nil || len(tokens)/cfg.BlockSize < len(published) {
		return d
	}
	if extra != nil && len(extra) > len(published) {
		extra = extra[:len(published)]
	}
	tokens = tokens[:len(published)*cfg.BlockSize]
	if keys, err := configured.BlockKeys(nil, tokens, extra); err == nil {
		if i := firstDiff(keys, published); i < 0 {
			d.Verdict, d.Algorithm = HashMatch, configured.Config().Algorithm
			return d
		} else {
			d.FirstMismatch = i
		}
	}
	for _, a := range Algorithms() {
		if a == configured.Config().Algorithm {
			continue
		}
		h, err := NewHasher(HashConfig{Algorithm: a, Seed: cfg.Seed, BlockSize: cfg.BlockSize})
		if err != nil {
			continue
		}
		if keys, err := h.BlockKeys(nil, tokens, extra); err == nil && firstDiff(keys, published) < 0 {
			d.Verdict, d.Algorithm = HashOtherAlgorithm, a
			return d
		}
	}
	d.Verdict = HashSeedOrExtras
	return d
}

func firstDiff(a, b []kvblock.Key) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

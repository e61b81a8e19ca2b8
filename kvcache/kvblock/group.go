package kvblock

import (
	"context"
	"strings"
)

// GroupKind is the attention type of a KV-cache group, which decides which of
// a prompt's blocks the group needs for a prefix-cache hit (vLLM's
// single-type KV-cache managers).
type GroupKind uint8

// The group kinds Score distinguishes. The zero value is GroupFull.
const (
	// GroupFull needs every block of the prefix: full attention, MLA,
	// sink full attention, and kinds kvtrack does not know (the
	// conservative choice: it never predicts a hit vLLM would not find).
	GroupFull GroupKind = iota
	// GroupSlidingWindow needs only the blocks covering the last
	// SlidingWindow-1 tokens before the hit point.
	GroupSlidingWindow
	// GroupMamba (state-space and linear-attention layers) needs only the
	// block that ends at the hit point: it holds the state there.
	GroupMamba
	// GroupIgnored is a group that never constrains a hit: encoder-only
	// and cross attention, which vLLM does not prefix-cache.
	GroupIgnored
)

// GroupKindOf maps vLLM's kv_cache_spec_kind to a GroupKind. The empty
// string (events before vLLM added the field) is GroupFull.
func GroupKindOf(specKind string) GroupKind {
	switch strings.ToLower(specKind) {
	case "sliding_window", "sliding_window_mla":
		return GroupSlidingWindow
	case "mamba":
		return GroupMamba
	case "encoder_only_attention", "cross_attention":
		return GroupIgnored
	}
	// full_attention, mla_attention, sink_full_attention,
	// chunked_local_attention (which needs fewer blocks than full
	// attention; counting it as full can only under-predict), unknown.
	return GroupFull
}

// String returns the kind's name.
func (k GroupKind) String() string {
	switch k {
	case GroupSlidingWindow:
		return "sliding_window"
	case GroupMamba:
		return "mamba"
	case GroupIgnored:
		return "ignored"
	}
	return "full"
}

// MaxGroups bounds the KV-cache group index an entry records. Group indices
// from AllGroups on are folded into AllGroups-1.
const MaxGroups = 32

// AllGroups is the group of an entry that stands for every group of the pod
// at once, such as a routing decision's speculative entry (the engine will
// store the block in each of its groups): a hybrid pod counts it as held by
// each of its groups. It describes no group.
const AllGroups = MaxGroups - 1

// Group describes one KV-cache group of an engine: what a BlockStored event
// says about the group it was emitted for (group_idx, kv_cache_spec_kind,
// kv_cache_spec_sliding_window, block_size).
//
// The zero Group is the one group of a model without hybrid attention: index
// 0, full attention, the index's block size.
type Group struct {
	Index         int       // group_idx
	Kind          GroupKind // from kv_cache_spec_kind
	SlidingWindow int       // tokens; meaningful for GroupSlidingWindow
	BlockSize     int       // tokens per block of this group; 0 means the keys' block size
}

// GroupIndex is implemented by indexes that keep per-group membership, so
// that a hybrid model's prefix-cache hit is computed as vLLM's hybrid
// coordinator computes it. Add and Remove of Index act on group 0, full
// attention.
//
// An index that does not implement it merges every group of a pod: it
// scores a hybrid model as if all its groups were full attention, and
// keeps a block while any group still holds it.
type GroupIndex interface {
	Index
	// AddGroup is Add for the blocks of one KV-cache group. It also
	// records the group's description for the pod; a later description of
	// the same group index replaces it.
	AddGroup(ctx context.Context, pod Pod, tier Tier, g Group, keys []Key) error
	// RemoveGroup is Remove for the blocks of KV-cache group group.
	RemoveGroup(ctx context.Context, pod Pod, tier Tier, group int, keys []Key) error
}

func foldGroup(g int) uint64 {
	if g == AllGroups {
		return AllGroups
	}
	return uint64(min(max(g, 0), AllGroups-1))
}

// AddGroup records keys of group g on idx: with idx's AddGroup when it is a
// GroupIndex, else with Add, merging the groups (see GroupIndex).
func AddGroup(ctx context.Context, idx Index, pod Pod, tier Tier, g Group, keys []Key) error {
	if gi, ok := idx.(GroupIndex); ok {
		return gi.AddGroup(ctx, pod, tier, g, keys)
	}
	return idx.Add(ctx, pod, tier, keys)
}

// RemoveGroup removes keys of group group from idx: with idx's RemoveGroup
// when it is a GroupIndex, else with Remove.
func RemoveGroup(ctx context.Context, idx Index, pod Pod, tier Tier, group int, keys []Key) error {
	if gi, ok := idx.(GroupIndex); ok {
		return gi.RemoveGroup(ctx, pod, tier, group, keys)
	}
	return idx.Remove(ctx, pod, tier, keys)
}

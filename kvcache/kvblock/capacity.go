package kvblock

// Capacity returns the most (key, pod, tier) entries the index holds
// before it evicts (MemIndexConfig.Capacity after defaults), for the
// kvtrack_index_capacity_entries and kvtrack_index_fill_ratio gauges.
func (x *MemIndex) Capacity() int { return x.cfg.Capacity }

// capacitor is an index with a bound on its entries.
type capacitor interface{ Capacity() int }

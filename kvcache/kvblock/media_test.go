package kvblock_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

func TestMediaNumbersTiersDeterministically(t *testing.T) {
	// The same names in any order, with duplicates and built-ins, give the
	// same table: the built-in media keep their constants, the others
	// follow in sorted order.
	a := kvblock.NewMedia("NVME", "LOCAL_SSD")
	b := kvblock.NewMedia("LOCAL_SSD", "GPU", "NVME", "NVME", "", "SPECULATIVE")
	tests := []struct {
		medium string
		want   kvblock.Tier
		ok     bool
	}{
		{"", kvblock.TierGPU, true},
		{"GPU", kvblock.TierGPU, true},
		{"CPU", kvblock.TierCPU, true},
		{"STORAGE", kvblock.TierStorage, true},
		{"LOCAL_SSD", 4, true},
		{"NVME", 5, true},
		{"gpu", kvblock.TierOther, false},                // media are case-sensitive, as vLLM writes them
		{"SPECULATIVE", kvblock.TierOther, false},        // reserved for the router's own entries
		{"(other)", kvblock.TierOther, false},            // the name of TierOther is no medium
		{"NEVER-CONFIGURED", kvblock.TierOther, false},   // unknown media share one tier
		{"NEVER-CONFIGURED-2", kvblock.TierOther, false}, // ... however many there are
	}
	for _, tt := range tests {
		for name, m := range map[string]*kvblock.Media{"a": a, "b": b} {
			if got, ok := m.Tier(tt.medium); got != tt.want || ok != tt.ok {
				t.Errorf("%s.Tier(%q) = %v, %v; want %v, %v", name, tt.medium, got, ok, tt.want, tt.ok)
			}
		}
	}
	for tier, want := range map[kvblock.Tier]string{
		kvblock.TierGPU: "GPU", kvblock.TierCPU: "CPU", kvblock.TierStorage: "STORAGE", kvblock.TierSpeculative: "SPECULATIVE",
		4: "LOCAL_SSD", 5: "NVME", 6: "tier6", kvblock.TierOther: "(other)", 200: "(other)",
	} {
		if got := a.Name(tier); got != want {
			t.Errorf("Name(%d) = %q, want %q", tier, got, want)
		}
	}
	if a.Len() != 6 || b.Len() != 6 {
		t.Errorf("Len() = %d, %d; want 6 (4 built-in + 2)", a.Len(), b.Len())
	}
}

func TestBuiltinTableIsNil(t *testing.T) {
	var m *kvblock.Media
	for _, medium := range []string{"", "GPU", "CPU", "STORAGE", "NVME", "SPECULATIVE"} {
		got, _ := m.Tier(medium)
		if tof := kvblock.TierOf(medium); got != tof {
			t.Errorf("TierOf(%q) = %v, nil table says %v", medium, tof, got)
		}
		if got.String() != m.Name(got) {
			t.Errorf("Tier(%d).String() = %q, nil table names it %q", got, got.String(), m.Name(got))
		}
	}
	if kvblock.TierOf("NVME") != kvblock.TierOther || kvblock.TierOf("STORAGE") != kvblock.TierStorage {
		t.Errorf("TierOf names media beyond the built-in ones")
	}
}

// TestMediaBounded: a table never holds more tiers than an index can
// pack, whatever it is given.
func TestMediaBounded(t *testing.T) {
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("M%04d", i)
	}
	m := kvblock.NewMedia(names...)
	if m.Len() != int(kvblock.TierOther) {
		t.Errorf("Len() = %d, want %d", m.Len(), kvblock.TierOther)
	}
	if got, ok := m.Tier(names[kvblock.MaxMedia-1]); !ok || got != kvblock.TierOther-1 {
		t.Errorf("last name that fits: %v, %v; want %v", got, ok, kvblock.TierOther-1)
	}
	if got, ok := m.Tier(names[kvblock.MaxMedia]); ok || got != kvblock.TierOther {
		t.Errorf("first name past MaxMedia: %v, %v; want TierOther, not ok", got, ok)
	}
}

func TestTierWeightsValidate(t *testing.T) {
	many := kvblock.TierWeights{"GPU": 1, "SPECULATIVE": 1}
	for i := range kvblock.MaxMedia {
		many[fmt.Sprintf("M%d", i)] = 0.5
	}
	if err := many.Validate(); err != nil {
		t.Errorf("MaxMedia media besides the built-in ones: %v", err)
	}
	many["ONE-TOO-MANY"] = 0.5
	tests := []struct {
		name    string
		w       kvblock.TierWeights
		want    string
		wantErr error
	}{
		{"too many media", many, "at most 27", kvblock.ErrTooManyMedia},
		{"the other tier's name", kvblock.TierWeights{"(other)": 1}, `"(other)" names the tier of unconfigured media`, nil},
	}
	for _, tt := range tests {
		err := tt.w.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := kvblock.NewMemIndex(kvblock.MemIndexConfig{TierWeights: many}); !errors.Is(err, kvblock.ErrInvalidConfig) || !errors.Is(err, kvblock.ErrTooManyMedia) {
		t.Errorf("NewMemIndex with too many media: %v, want ErrInvalidConfig wrapping ErrTooManyMedia", err)
	}
}

func TestTierWeightsTable(t *testing.T) {
	w := kvblock.TierWeights{"GPU": 1, "CPU": 0.8, "NVME": 0.3, "ZZZ": 0.1}
	m := w.Media()
	table := w.Table()
	for medium, want := range w {
		tier, _ := m.Tier(medium)
		if table[tier] != want {
			t.Errorf("table[%s (%d)] = %v, want %v", medium, tier, table[tier], want)
		}
	}
	if table[kvblock.TierStorage] != 0 || table[kvblock.TierOther] != 0 {
		t.Errorf("unconfigured STORAGE and other media weigh %v and %v, want 0", table[kvblock.TierStorage], table[kvblock.TierOther])
	}
}

package jinja

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestFromJSONAgreesWithEncodingJSON decodes strings around the eight-byte
// scanning boundary and with every escape, and compares with
// encoding/json.
func TestFromJSONAgreesWithEncodingJSON(t *testing.T) {
	var cases []string
	for n := 0; n < 20; n++ {
		for _, special := range []string{`\"`, `\\`, `\n`, `\u00e9`, `\ud83d\ude00`, `\/`, "é", "😀", `\t`} {
			cases = append(cases, `"`+strings.Repeat("a", n)+special+strings.Repeat("b", 20-n)+`"`)
		}
	}
	cases = append(cases, `{"a": [1, -2.5e3, true, false, null, {"b": "c"}], "d": "\u0000x", "a": 3}`, `[]`, `{}`, `""`, `"\ud800"`)
	for _, c := range cases {
		got, err := FromJSON([]byte(c))
		if err != nil {
			t.Errorf("FromJSON(%s): %v", c, err)
			continue
		}
		var want any
		if err := json.Unmarshal([]byte(c), &want); err != nil {
			t.Fatal(err)
		}
		if ws, ok := want.(string); ok && got != ws {
			t.Errorf("FromJSON(%s) = %q, want %q", c, got, ws)
		}
	}
	for _, bad := range []string{`"abc`, "\"a\x01b\"", `{"a" 1}`, `[1,]`, `01x`, `"\x"`, `{"a":1} x`, `tru`, `-`, `1.`, `1e`, `01`, `-01`} {
		if v, err := FromJSON([]byte(bad)); err == nil {
			t.Errorf("FromJSON(%q) = %v, want an error", bad, v)
		}
	}
}

package jinja

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type golden struct {
	Now   string          `json:"now"`
	Vars  json.RawMessage `json:"vars"`
	Cases []struct {
		Name     string  `json:"name"`
		Template string  `json:"template"`
		Want     *string `json:"want"`
		Error    string  `json:"error"`
	} `json:"cases"`
}

var pinnedNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// testVars decodes the goldens' variables and adds strftime_now at the
// pinned clock.
func testVars(t testing.TB, raw json.RawMessage) map[string]any {
	t.Helper()
	v, err := FromJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*Dict)
	vars := map[string]any{"strftime_now": Func(func(args []any, _ *Dict) (any, error) {
		if len(args) != 1 {
			return nil, errors.New("strftime_now takes one format argument")
		}
		return Strftime(pinnedNow, str(args[0])), nil
	})}
	for i, k := range d.Keys() {
		vars[k.(string)] = d.Values()[i]
	}
	return vars
}

// knownUnsupported are cases Jinja2 renders that this renderer refuses
// on purpose: it must say so, never render something else.
var knownUnsupported = map[string]string{
	"str-method-unsupported": "str method 'center'",
	"unsupported-filter":     "filter 'center'",
	"filter-generator-print": "printing a generator",
	"big-integers":           "integer arithmetic beyond 64 bits",
}

// TestGoldens renders every construct template of
// hack/gen-jinja-goldens.py and compares with Python Jinja2 in
// transformers' environment: the same text, or an error where Jinja2
// raised one.
func TestGoldens(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "goldens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if g.Now != pinnedNow.Format("2006-01-02T15:04:05") {
		t.Fatalf("goldens rendered at %s, the test pins %s", g.Now, pinnedNow)
	}
	vars := testVars(t, g.Vars)
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			got, err := renderString(c.Template, vars)
			if want, ok := knownUnsupported[c.Name]; ok {
				var ue *UnsupportedError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), want) {
					t.Fatalf("got %q, %v; want an unsupported-construct error naming %s", got, err, want)
				}
				return
			}
			if c.Want == nil {
				if err == nil {
					t.Fatalf("rendered %q; Jinja2 raised %s", got, c.Error)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v; Jinja2 rendered %q", err, *c.Want)
			}
			if got != *c.Want {
				t.Fatalf("rendering differs from Jinja2:\n got %q\nwant %q", got, *c.Want)
			}
		})
	}
}

func renderString(src string, vars map[string]any) (string, error) {
	tpl, err := Parse(src)
	if err != nil {
		return "", err
	}
	return tpl.Render(vars)
}

package main

import (
	"io"
	"strings"
	"testing"
)

func TestExampleConfigLoadsAndValidates(t *testing.T) {
	cfg, err := parseArgs([]string{"-config", "router.example.yaml"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pods) != 2 || cfg.KVCache.Hash.Seed != "42" || !cfg.KVCache.Speculative.Enabled || cfg.PrefixWeight != 2 {
		t.Errorf("loaded %+v", cfg)
	}
}

func TestFlagsOverrideTheFile(t *testing.T) {
	cfg, err := parseArgs([]string{"-config", "router.example.yaml", "-pods", "a:1", "-events-bind", "tcp://*:6000", "-tokenizer", "http://a:1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pods) != 1 || cfg.KVCache.Events.Endpoint != "tcp://*:6000" || cfg.KVCache.Tokenizer.URL != "http://a:1" || cfg.KVCache.Tokenizer.Path != "" {
		t.Errorf("got pods %v, events %+v, tokenizer %+v", cfg.Pods, cfg.KVCache.Events, cfg.KVCache.Tokenizer)
	}
}

func TestBadConfigNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-pods", "a:1"}, "hash.seed"},
		{[]string{"-hash-seed", "42"}, "no pods"},
		{[]string{"-config", "testdata/unknown-field.yaml"}, "unknown field"},
	} {
		_, err := parseArgs(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseArgs(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
}

package kvcache

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestEventsLimitsDefaults(t *testing.T) {
	got := DefaultConfig().Events.Limits
	want := EventsLimits{
		MaxMessageBytes: 16 << 20, MaxBlocksPerEvent: 1 << 16, MaxTokensPerEvent: 1 << 20, MaxEventsPerBatch: 1 << 16,
		EventsPerSecond: 100000, EventsBurst: 1000000, MaxQueuedBytes: 256 << 20, MaxReplayBytes: 256 << 20,
	}
	if got != want {
		t.Errorf("events.limits defaults = %+v, want %+v", got, want)
	}
	if DefaultConfig().Events.Security.AllowAnySource {
		t.Error("events.security.allowAnySource defaults to true, want false")
	}
}

func TestEventsLimitsValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*EventsLimits)
		field string
		valid string
	}{
		{"message bytes", func(l *EventsLimits) { l.MaxMessageBytes = -1 }, "events.limits.maxMessageBytes", "positive number of bytes"},
		{"blocks", func(l *EventsLimits) { l.MaxBlocksPerEvent = -1 }, "events.limits.maxBlocksPerEvent", "positive number of block hashes"},
		{"tokens", func(l *EventsLimits) { l.MaxTokensPerEvent = -1 }, "events.limits.maxTokensPerEvent", "positive number of token ids"},
		{"events", func(l *EventsLimits) { l.MaxEventsPerBatch = -1 }, "events.limits.maxEventsPerBatch", "positive number of events"},
		{"rate", func(l *EventsLimits) { l.EventsPerSecond = -2 }, "events.limits.eventsPerSecond", "or -1 for no limit"},
		{"rate inf", func(l *EventsLimits) { l.EventsPerSecond = math.Inf(1) }, "events.limits.eventsPerSecond", "finite"},
		{"burst", func(l *EventsLimits) { l.EventsBurst = -1 }, "events.limits.eventsBurst", "positive"},
		{"queued", func(l *EventsLimits) { l.MaxQueuedBytes = -1 }, "events.limits.maxQueuedBytes", "positive number of bytes"},
		{"replay", func(l *EventsLimits) { l.MaxReplayBytes = -1 }, "events.limits.maxReplayBytes", "positive number of bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.edit(&c.Events.Limits)
			err := c.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Validate() = %v, want a FieldError for %q", err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.valid) {
				t.Errorf("Validate() = %q, want it to say %q", err, tt.valid)
			}
		})
	}
	c := validConfig()
	c.Events.Limits.EventsPerSecond = -1
	if err := c.Validate(); err != nil {
		t.Errorf("eventsPerSecond -1: Validate() = %v, want nil (no limit)", err)
	}
}

func TestEventsLimitsDecode(t *testing.T) {
	const js = `{"hash": {"seed": "0"}, "events": {"mode": "bind", "endpoint": "tcp://*:5557",
  "limits": {"maxMessageBytes": 1048576, "maxBlocksPerEvent": 512, "eventsPerSecond": -1},
  "security": {"allowAnySource": true}}}`
	const yml = `
hash: {seed: "0"}
events:
  mode: bind
  endpoint: "tcp://*:5557"
  limits: {maxMessageBytes: 1048576, maxBlocksPerEvent: 512, eventsPerSecond: -1}
  security: {allowAnySource: true}
`
	check := func(t *testing.T, c Config) {
		t.Helper()
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		e := c.WithDefaults().Events
		if e.Limits.MaxMessageBytes != 1<<20 || e.Limits.MaxBlocksPerEvent != 512 || e.Limits.EventsPerSecond != -1 ||
			e.Limits.MaxTokensPerEvent != DefaultMaxTokensPerEvent || !e.Security.AllowAnySource {
			t.Errorf("events = %+v", e)
		}
	}
	t.Run("json", func(t *testing.T) {
		var c Config
		if err := json.Unmarshal([]byte(js), &c); err != nil {
			t.Fatal(err)
		}
		check(t, c)
	})
	t.Run("yaml", func(t *testing.T) {
		var c Config
		if err := DecodeStrict([]byte(yml), &c); err != nil {
			t.Fatal(err)
		}
		check(t, c)
	})
}

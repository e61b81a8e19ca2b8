package kvcache_test

import (
	"testing"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvevents"
)

// With speculative entries on, the index the event source applies events
// to is a kvevents.ParentObserver: a partial-tail entry is confirmed by
// the run stored after it, which kvevents tells only such an index.
// kvcache cannot name the interface, so this is where a signature drift
// shows.
func TestSpeculationSinkObservesParents(t *testing.T) {
	var observes bool
	start(t, kvcache.Config{Speculative: kvcache.SpeculativeConfig{Enabled: true}},
		kvcache.WithEventSource(func(cfg kvcache.Config, env kvcache.SourceEnv) (kvcache.EventSource, error) {
			_, observes = env.Sink.(kvevents.ParentObserver)
			return kvevents.Source(cfg, env)
		}))
	if !observes {
		t.Error("the event sink is not a kvevents.ParentObserver")
	}
}

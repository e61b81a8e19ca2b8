package kvevents

import (
	"testing"

	"github.com/go-logr/logr/funcr"
)

func testLogger(t *testing.T) Option {
	return WithLogger(funcr.New(func(prefix, args string) { t.Log(prefix, args) }, funcr.Options{Verbosity: 1}))
}

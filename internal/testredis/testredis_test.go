package testredis

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how a helper ended the test;
// Fatalf and Skipf end the goroutine, as the real ones do.
type recorder struct {
	testing.TB
	failed, skipped string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// endOf runs f on a recorder and returns it once f has ended.
func endOf(f func(testing.TB)) *recorder {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

// A test that needs valkey-server and lacks it fails and names `make deps`,
// unless KVTRACK_SKIP_VALKEY=1 lets it skip; it never skips silently.
func TestMissingValkeyFailsNamingMakeDeps(t *testing.T) {
	for _, tc := range []struct {
		name     string
		skipEnv  string
		wantFail bool
	}{
		{"without " + SkipValkeyEnv, "", true},
		{SkipValkeyEnv + "=0", "0", true},
		{SkipValkeyEnv + "=1", "1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir()) // no valkey-server on it
			t.Setenv(SkipValkeyEnv, tc.skipEnv)
			r := endOf(func(tb testing.TB) { Binary(tb, "valkey-server") })
			switch {
			case tc.wantFail && (r.failed == "" || !strings.Contains(r.failed, "make deps") || !strings.Contains(r.failed, SkipValkeyEnv)):
				t.Errorf("failed with %q (skipped with %q), want a failure naming `make deps` and %s", r.failed, r.skipped, SkipValkeyEnv)
			case !tc.wantFail && (r.failed != "" || r.skipped == ""):
				t.Errorf("failed with %q, skipped with %q; want a skip", r.failed, r.skipped)
			}
		})
	}
}

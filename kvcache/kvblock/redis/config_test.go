package redis_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/kvcache/kvblock/redis"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := redis.DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	if err := (redis.Config{}).Validate(); err != nil {
		t.Fatalf("zero Config Validate() = %v", err)
	}
}

// TestValidateNamesTheField: every error is a *FieldError naming the
// field as spelled in JSON within Config, and saying what is valid in the
// words kvcache uses (it reports them under "redis.").
func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*redis.Config)
		field string
		says  string
	}{
		{"addr without port", func(c *redis.Config) { c.Addr = "localhost" }, "addr", `"localhost" is not host:port (valid: e.g. localhost:6379`},
		{"negative db", func(c *redis.Config) { c.DB = -1 }, "db", "-1 is negative (valid: a database number >= 0)"},
		{"username without password", func(c *redis.Config) { c.Username = "kv" }, "password", `empty while username "kv" is set (valid: the ACL user's password)`},
		{"tls field without tls", func(c *redis.Config) { c.TLS.CAFile = "ca.pem" }, "tls.enabled", "(fix: set tls.enabled: true, or drop them)"},
		{"ca and insecure", func(c *redis.Config) {
			c.TLS = redis.TLSConfig{Enabled: true, CAFile: "ca.pem", InsecureSkipVerify: true}
		}, "tls.insecureSkipVerify", "true together with tls.caFile (valid: one of them)"},
		{"prefix with space", func(c *redis.Config) { c.KeyPrefix = "kv track:" }, "keyPrefix", `"kv track:" contains whitespace`},
		{"negative pool", func(c *redis.Config) { c.PoolSize = -2 }, "poolSize", "-2 is negative (valid: 0 for 10 per CPU, or a number of connections)"},
		{"negative ttl", func(c *redis.Config) { c.TTL = time.Duration(-time.Second) }, "ttl", "(valid: 1ms or more, or 0 to disable expiry)"},
		{"ttl below resolution", func(c *redis.Config) { c.TTL = time.Duration(time.Microsecond) }, "ttl", "1µs is below expiry's 1ms resolution"},
		{"negative dial timeout", func(c *redis.Config) { c.DialTimeout = -1 }, "dialTimeout", "-1ns is negative (valid: 0 for the default, or a positive duration such as 500ms)"},
		{"negative read timeout", func(c *redis.Config) { c.ReadTimeout = -1 }, "readTimeout", "-1ns is negative"},
		{"negative write timeout", func(c *redis.Config) { c.WriteTimeout = -1 }, "writeTimeout", "-1ns is negative"},
		{"db in a cluster", func(c *redis.Config) { c.Cluster.Enabled = true; c.DB = 2 }, "db", "2 with cluster.enabled (valid: 0, Redis Cluster's only database)"},
		{"groups", func(c *redis.Config) { c.Cluster.Groups = 5000 }, "cluster.groups", "5000 out of range (valid: 0 for the default, up to 4096)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := redis.DefaultConfig()
			tt.edit(&cfg)
			err := cfg.Validate()
			var fe *redis.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Err.Error(), tt.says) {
				t.Fatalf("Validate() = %v, want a FieldError for %s saying %q", err, tt.field, tt.says)
			}
			if _, nerr := redis.New(cfg); nerr == nil || !errors.As(nerr, &fe) {
				t.Errorf("New(%+v) = %v, want the FieldError Validate reports", cfg, nerr)
			}
		})
	}
}

func TestValidateReportsEveryBadField(t *testing.T) {
	cfg := redis.Config{DB: -1, PoolSize: -1}
	err := cfg.Validate()
	want := "db: -1 is negative (valid: a database number >= 0)\n" +
		"poolSize: -1 is negative (valid: 0 for 10 per CPU, or a number of connections)"
	if err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
	}
}

func TestNewReportsAnUnreadableCAFile(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing.pem"), notPEM} {
		cfg := redis.Config{TLS: redis.TLSConfig{Enabled: true, CAFile: path}}
		if _, err := redis.New(cfg); err == nil || !strings.Contains(err.Error(), "redis.tls.caFile") {
			t.Errorf("CA file %s: err = %v, want one naming redis.tls.caFile", filepath.Base(path), err)
		}
	}
}

package redis_test

import (
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

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*redis.Config)
		field string
	}{
		{"addr without port", func(c *redis.Config) { c.Addr = "localhost" }, "redis.addr"},
		{"negative db", func(c *redis.Config) { c.DB = -1 }, "redis.db"},
		{"username without password", func(c *redis.Config) { c.Username = "kv" }, "redis.password"},
		{"tls field without tls", func(c *redis.Config) { c.TLS.CAFile = "ca.pem" }, "redis.tls.enabled"},
		{"ca and insecure", func(c *redis.Config) {
			c.TLS = redis.TLSConfig{Enabled: true, CAFile: "ca.pem", InsecureSkipVerify: true}
		}, "redis.tls.insecureSkipVerify"},
		{"prefix with space", func(c *redis.Config) { c.KeyPrefix = "kv track:" }, "redis.keyPrefix"},
		{"negative pool", func(c *redis.Config) { c.PoolSize = -2 }, "redis.poolSize"},
		{"negative ttl", func(c *redis.Config) { c.TTL = time.Duration(-time.Second) }, "redis.ttl"},
		{"ttl below resolution", func(c *redis.Config) { c.TTL = time.Duration(time.Microsecond) }, "redis.ttl"},
		{"negative dial timeout", func(c *redis.Config) { c.DialTimeout = -1 }, "redis.dialTimeout"},
		{"negative read timeout", func(c *redis.Config) { c.ReadTimeout = -1 }, "redis.readTimeout"},
		{"negative write timeout", func(c *redis.Config) { c.WriteTimeout = -1 }, "redis.writeTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := redis.DefaultConfig()
			tt.edit(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.field+":") {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.field)
			}
			if _, nerr := redis.New(cfg); nerr == nil {
				t.Errorf("New accepted a config Validate rejects")
			}
		})
	}
}

func TestValidateReportsEveryBadField(t *testing.T) {
	cfg := redis.Config{DB: -1, PoolSize: -1}
	err := cfg.Validate()
	for _, field := range []string{"redis.db:", "redis.poolSize:"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate() = %v, want it to name %s", err, field)
		}
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

package redis

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kvtrack/kvtrack/internal/fielderr"
)

// Config selects and tunes the Redis (or Valkey) server that holds a shared
// index. It is the backend's side of kvcache.Config's "redis" section,
// which is the schema users write (kvcache translates it). Zero values mean
// the documented default, except TTL, whose zero disables expiry: start from
// DefaultConfig to get the default TTL.
type Config struct {
	// Addr is the server's host:port. Default "localhost:6379".
	Addr string
	// DB is the logical database number. Default 0.
	DB int
	// Username and Password authenticate with AUTH (ACL user or legacy
	// requirepass when Username is empty).
	Username string
	Password string
	// TLS configures an encrypted connection.
	TLS TLSConfig
	// KeyPrefix starts every key the index writes, so several indexes (or
	// other applications) can share one database. Default "kvtrack:".
	KeyPrefix string
	// PoolSize is the maximum number of connections. Default 10 per CPU.
	PoolSize int
	// TTL drops an entry that has not been stored again for this long: a
	// safety net for removals that never arrived (lost events, pods that
	// vanished). Expiry runs on the write path, a bounded amount per write.
	// 0 disables it. DefaultConfig sets one hour.
	TTL time.Duration
	// Buckets is the number of strings the blocks are packed into (split
	// evenly over the groups), so that the per-key overhead of Redis is
	// shared by the blocks of a bucket. Size it at about the blocks the
	// index holds divided by 16: fewer buckets make a score read more
	// bytes, more make each block cost more memory. Every replica sharing
	// the index must use the same value. Default DefaultBuckets.
	Buckets int
	// DialTimeout bounds connecting. Default 1s.
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound each socket read and write; a
	// context deadline, when earlier, wins. Default 500ms each.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration

	// Cluster selects Redis Cluster and spreads the index over hash slots;
	// see ClusterConfig (config_cluster.go).
	Cluster ClusterConfig
}

// TLSConfig configures TLS to the server.
type TLSConfig struct {
	// Enabled turns TLS on. The other fields require it.
	Enabled bool
	// CAFile is a PEM bundle of CAs to verify the server with, instead of
	// the system pool.
	CAFile string
	// ServerName overrides the name verified in the server's certificate
	// (default: the host part of Addr).
	ServerName string
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool
}

// Defaults used for zero Config fields.
const (
	DefaultAddr         = "localhost:6379"
	DefaultKeyPrefix    = "kvtrack:"
	DefaultTTL          = time.Hour
	DefaultBuckets      = 1 << 16
	DefaultDialTimeout  = time.Second
	DefaultReadTimeout  = 500 * time.Millisecond
	DefaultWriteTimeout = 500 * time.Millisecond
)

// maxBuckets bounds Buckets: a bucket id is 4 bytes, and past a few
// hundred million the buckets would hold a block each.
const maxBuckets = 1 << 30

// DefaultConfig returns a Config with every default spelled out.
func DefaultConfig() Config {
	return Config{
		Addr:         DefaultAddr,
		KeyPrefix:    DefaultKeyPrefix,
		Buckets:      DefaultBuckets,
		TTL:          time.Duration(DefaultTTL),
		DialTimeout:  time.Duration(DefaultDialTimeout),
		ReadTimeout:  time.Duration(DefaultReadTimeout),
		WriteTimeout: time.Duration(DefaultWriteTimeout),
	}
}

// FieldError is the type of the errors Validate joins: the field's path
// as spelled in JSON within Config ("tls.enabled"), and what is wrong with
// it. kvcache reports them under its "redis." section.
type FieldError = fielderr.Error

// Validate reports every invalid field, joined with errors.Join, each a
// *FieldError naming the field and what it accepts.
func (c Config) Validate() error {
	var errs fielderr.List
	bad := errs.Add
	if c.Addr != "" {
		if _, port, err := net.SplitHostPort(c.Addr); err != nil || port == "" {
			bad("addr", "%q is not host:port (valid: e.g. localhost:6379 or [fd00::7]:6379)", c.Addr)
		}
	}
	if c.DB < 0 {
		bad("db", "%d is negative (valid: a database number >= 0)", c.DB)
	}
	if c.Username != "" && c.Password == "" {
		bad("password", "empty while username %q is set (valid: the ACL user's password)", c.Username)
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.ServerName != "" || c.TLS.InsecureSkipVerify) {
		bad("tls.enabled", "false while other tls fields are set (fix: set tls.enabled: true, or drop them)")
	}
	if c.TLS.CAFile != "" && c.TLS.InsecureSkipVerify {
		bad("tls.insecureSkipVerify", "true together with tls.caFile (valid: one of them)")
	}
	if strings.ContainsAny(c.KeyPrefix, " \t\r\n") {
		bad("keyPrefix", "%q contains whitespace (valid: letters, digits and punctuation such as ':')", c.KeyPrefix)
	}
	if c.Buckets < 0 || c.Buckets > maxBuckets {
		bad("buckets", "%d out of range (valid: 0 for the default of %d, up to %d; about the index's blocks / 16)", c.Buckets, DefaultBuckets, maxBuckets)
	}
	if c.PoolSize < 0 {
		bad("poolSize", "%d is negative (valid: 0 for 10 per CPU, or a number of connections)", c.PoolSize)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"dialTimeout", c.DialTimeout}, {"readTimeout", c.ReadTimeout}, {"writeTimeout", c.WriteTimeout}} {
		if d.v < 0 {
			bad(d.field, "%v is negative (valid: 0 for the default, or a positive duration such as 500ms)", d.v)
		}
	}
	if c.TTL < 0 || (c.TTL > 0 && c.TTL < time.Millisecond) {
		bad("ttl", "%v is below expiry's 1ms resolution (valid: 1ms or more, or 0 to disable expiry)", c.TTL)
	}
	c.Cluster.validate(c.DB, bad)
	return errs.Err()
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = d.KeyPrefix
	}
	if c.Buckets == 0 {
		c.Buckets = d.Buckets
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = d.ReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	return c
}

// clientOptions turns a validated, defaulted Config into go-redis options.
func (c Config) clientOptions() (*goredis.Options, error) {
	o := &goredis.Options{
		Addr:                  c.Addr,
		DB:                    c.DB,
		Username:              c.Username,
		Password:              c.Password,
		PoolSize:              c.PoolSize,
		DialTimeout:           time.Duration(c.DialTimeout),
		ReadTimeout:           time.Duration(c.ReadTimeout),
		WriteTimeout:          time.Duration(c.WriteTimeout),
		ContextTimeoutEnabled: true,
		// The write scripts are not idempotent (they count references): a
		// retry after a lost reply could apply a store twice. A failure is
		// reported to the caller instead; see Index.
		MaxRetries:      -1,
		DisableIdentity: true,
	}
	if c.TLS.Enabled {
		host, _, _ := net.SplitHostPort(c.Addr)
		tc := &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         host,
			InsecureSkipVerify: c.TLS.InsecureSkipVerify, //nolint:gosec // opt-in, documented as test-only
		}
		if c.TLS.ServerName != "" {
			tc.ServerName = c.TLS.ServerName
		}
		if c.TLS.CAFile != "" {
			pem, err := os.ReadFile(c.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("redis.tls.caFile: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("redis.tls.caFile: %s holds no PEM certificate", c.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		o.TLSConfig = tc
	}
	return o, nil
}

package auth

import (
	"errors"
	"fmt"
	"time"
)

// maxArgon2MemoryKiB caps the per-hash memory (4 GiB) so a typo in the
// config cannot make every login allocate terabytes.
const maxArgon2MemoryKiB = 4 << 20

// Config configures accounts, passwords and tokens. The zero value is not
// usable; start from DefaultConfig.
type Config struct {
	// AccessTTL is how long an access token (JWT) is valid. Short, because
	// an access token cannot be recalled before it expires on other nodes
	// of a cluster (see DeviceCacheTTL). Default 15m.
	AccessTTL time.Duration `yaml:"access_ttl" env:"ACCESS_TTL"`
	// RefreshTTL is how long a refresh token is valid. Every Refresh issues
	// a new one with a fresh TTL, so a device that connects at least this
	// often stays signed in. Must be at least AccessTTL. Default 720h
	// (30 days).
	RefreshTTL time.Duration `yaml:"refresh_ttl" env:"REFRESH_TTL"`
	// SigningKeyFile is the PEM (PKCS#8) Ed25519 private key that signs
	// access tokens. Empty means "<data dir>/signing.key". A missing file is
	// created with a new key (mode 0600). Every node of a cluster must use
	// the same key, so clusters mount it from a Secret.
	SigningKeyFile string `yaml:"signing_key_file" env:"SIGNING_KEY_FILE"`
	// DeviceCacheTTL is how long a node trusts its cached "this device is
	// not revoked" answer before asking the store again. Revocations made
	// on this node take effect at once; on other nodes an access token of
	// a revoked device keeps working for up to this long. 0 disables the
	// cache (one store read per authenticated call). Default 30s.
	DeviceCacheTTL time.Duration `yaml:"device_cache_ttl" env:"DEVICE_CACHE_TTL"`
	// DeviceCacheSize bounds the number of cached devices; beyond it,
	// entries are evicted. Default 100000.
	DeviceCacheSize int `yaml:"device_cache_size" env:"DEVICE_CACHE_SIZE"`
	// Argon2MemoryKiB is the argon2id memory cost per password hash, in
	// KiB. Default 65536 (64 MiB). Changing it affects new hashes only;
	// existing hashes keep the parameters they were made with.
	Argon2MemoryKiB uint32 `yaml:"argon2_memory_kib" env:"ARGON2_MEMORY_KIB"`
	// Argon2Iterations is the argon2id time cost (passes over memory).
	// Default 1.
	Argon2Iterations uint32 `yaml:"argon2_iterations" env:"ARGON2_ITERATIONS"`
	// Argon2Parallelism is the argon2id lane count (threads per hash).
	// Default 2.
	Argon2Parallelism uint8 `yaml:"argon2_parallelism" env:"ARGON2_PARALLELISM"`
	// MaxConcurrentHashes bounds how many password hashes run at once
	// (Register and Login). Peak memory for hashing is about
	// MaxConcurrentHashes × Argon2MemoryKiB; further callers wait their
	// turn or give up when their context ends. Default 4.
	MaxConcurrentHashes int `yaml:"max_concurrent_hashes" env:"MAX_CONCURRENT_HASHES"`
	// LoginFailureBurst is how many failed logins a username may take at
	// once; beyond it, one more per LoginFailureInterval, and every Login
	// of that username (right password or not) fails with
	// ResourceExhausted until then. Unknown usernames are counted alike,
	// so the limit does not tell whether an account exists. 0 disables
	// the limit. Default 10.
	LoginFailureBurst int `yaml:"login_failure_burst" env:"LOGIN_FAILURE_BURST"`
	// LoginFailureInterval refills one failed login of a username. 0
	// disables the limit. Default 1m (so 10 failures, then one a minute;
	// the full burst is back after 10 quiet minutes).
	LoginFailureInterval time.Duration `yaml:"login_failure_interval" env:"LOGIN_FAILURE_INTERVAL"`
	// AddressAttemptBurst is how many Register and Login calls one client
	// address (IP, without the port) may make at once; beyond it, one more
	// per AddressAttemptInterval. Behind a proxy every client shares the
	// proxy's address: raise it or disable it there. 0 disables the
	// limit. Default 30.
	AddressAttemptBurst int `yaml:"address_attempt_burst" env:"ADDRESS_ATTEMPT_BURST"`
	// AddressAttemptInterval refills one attempt of an address. 0
	// disables the limit. Default 1s.
	AddressAttemptInterval time.Duration `yaml:"address_attempt_interval" env:"ADDRESS_ATTEMPT_INTERVAL"`
}

// DefaultConfig returns the defaults documented on each Config field.
func DefaultConfig() Config {
	return Config{
		AccessTTL:           15 * time.Minute,
		RefreshTTL:          30 * 24 * time.Hour,
		DeviceCacheTTL:      30 * time.Second,
		DeviceCacheSize:     100_000,
		Argon2MemoryKiB:     64 * 1024,
		Argon2Iterations:    1,
		Argon2Parallelism:   2,
		MaxConcurrentHashes: 4,

		LoginFailureBurst:      10,
		LoginFailureInterval:   time.Minute,
		AddressAttemptBurst:    30,
		AddressAttemptInterval: time.Second,
	}
}

// Validate reports every invalid field, joined, or nil when c is usable.
func (c Config) Validate() error {
	var errs []error
	if c.AccessTTL <= 0 {
		errs = append(errs, fmt.Errorf("access_ttl must be positive, got %s", c.AccessTTL))
	}
	if c.RefreshTTL < c.AccessTTL {
		errs = append(errs, fmt.Errorf("refresh_ttl (%s) must be at least access_ttl (%s)", c.RefreshTTL, c.AccessTTL))
	}
	if c.DeviceCacheTTL < 0 {
		errs = append(errs, fmt.Errorf("device_cache_ttl must not be negative, got %s", c.DeviceCacheTTL))
	}
	if c.DeviceCacheSize < 1 {
		errs = append(errs, fmt.Errorf("device_cache_size must be at least 1, got %d", c.DeviceCacheSize))
	}
	errs = append(errs, c.params().validate()...)
	if c.MaxConcurrentHashes < 1 {
		errs = append(errs, fmt.Errorf("max_concurrent_hashes must be at least 1, got %d", c.MaxConcurrentHashes))
	}
	if c.LoginFailureBurst < 0 {
		errs = append(errs, fmt.Errorf("login_failure_burst must not be negative, got %d", c.LoginFailureBurst))
	}
	if c.LoginFailureInterval < 0 {
		errs = append(errs, fmt.Errorf("login_failure_interval must not be negative, got %s", c.LoginFailureInterval))
	}
	if c.AddressAttemptBurst < 0 {
		errs = append(errs, fmt.Errorf("address_attempt_burst must not be negative, got %d", c.AddressAttemptBurst))
	}
	if c.AddressAttemptInterval < 0 {
		errs = append(errs, fmt.Errorf("address_attempt_interval must not be negative, got %s", c.AddressAttemptInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("auth config: %w", err)
	}
	return nil
}

// params returns the argon2id parameters for new hashes.
func (c Config) params() argon2Params {
	return argon2Params{
		memoryKiB:   c.Argon2MemoryKiB,
		iterations:  c.Argon2Iterations,
		parallelism: c.Argon2Parallelism,
	}
}

package auth

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // empty: valid
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "cache_disabled", mutate: func(c *Config) { c.DeviceCacheTTL = 0 }},
		{name: "cheap_argon2_for_tests", mutate: func(c *Config) {
			c.Argon2MemoryKiB, c.Argon2Iterations, c.Argon2Parallelism = 8, 1, 1
		}},
		{name: "zero_access_ttl", mutate: func(c *Config) { c.AccessTTL = 0 }, wantErr: "access_ttl"},
		{name: "refresh_shorter_than_access", mutate: func(c *Config) { c.RefreshTTL = time.Minute }, wantErr: "refresh_ttl"},
		{name: "negative_cache_ttl", mutate: func(c *Config) { c.DeviceCacheTTL = -time.Second }, wantErr: "device_cache_ttl"},
		{name: "zero_cache_size", mutate: func(c *Config) { c.DeviceCacheSize = 0 }, wantErr: "device_cache_size"},
		{name: "zero_iterations", mutate: func(c *Config) { c.Argon2Iterations = 0 }, wantErr: "iterations"},
		{name: "zero_parallelism", mutate: func(c *Config) { c.Argon2Parallelism = 0 }, wantErr: "parallelism"},
		{name: "too_little_memory", mutate: func(c *Config) { c.Argon2MemoryKiB = 8 }, wantErr: "memory"},
		{name: "too_much_memory", mutate: func(c *Config) { c.Argon2MemoryKiB = maxArgon2MemoryKiB + 1 }, wantErr: "memory"},
		{name: "zero_hash_concurrency", mutate: func(c *Config) { c.MaxConcurrentHashes = 0 }, wantErr: "max_concurrent_hashes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestConfigValidateReportsEveryField(t *testing.T) {
	t.Parallel()
	err := Config{}.Validate()
	for _, field := range []string{"access_ttl", "device_cache_size", "iterations", "parallelism", "max_concurrent_hashes"} {
		require.ErrorContains(t, err, field)
	}
}

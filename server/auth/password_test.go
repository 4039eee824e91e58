package auth

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

var testParams = argon2Params{memoryKiB: 64, iterations: 1, parallelism: 1}

func TestHashPassword(t *testing.T) {
	t.Parallel()
	phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	tests := []struct {
		name     string
		password string
	}{
		{name: "ascii", password: "correct horse battery staple"},
		{name: "unicode", password: "пароль-密码-🔑"},
		{name: "max_length", password: string(make([]byte, 256))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hash, err := hashPassword(tt.password, testParams)
			require.NoError(t, err)
			require.Regexp(t, phc, hash)

			ok, err := verifyPassword(tt.password, hash)
			require.NoError(t, err)
			require.True(t, ok, "the right password verifies")

			ok, err = verifyPassword(tt.password+"x", hash)
			require.NoError(t, err)
			require.False(t, ok, "a wrong password does not")

			again, err := hashPassword(tt.password, testParams)
			require.NoError(t, err)
			require.NotEqual(t, hash, again, "each hash has its own salt")
		})
	}
}

func TestVerifyPasswordKeepsHashParameters(t *testing.T) {
	t.Parallel()
	// A hash made before the config changed still verifies: the parameters
	// come from the hash, not the config.
	old, err := hashPassword("hunter22", argon2Params{memoryKiB: 32, iterations: 2, parallelism: 2})
	require.NoError(t, err)
	ok, err := verifyPassword("hunter22", old)
	require.NoError(t, err)
	require.True(t, ok)
}

func TestHashPasswordRejectsBadParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		params argon2Params
	}{
		{name: "zero_iterations", params: argon2Params{memoryKiB: 64, iterations: 0, parallelism: 1}},
		{name: "zero_parallelism", params: argon2Params{memoryKiB: 64, iterations: 1, parallelism: 0}},
		{name: "memory_below_8k_per_lane", params: argon2Params{memoryKiB: 15, iterations: 1, parallelism: 2}},
		{name: "memory_too_large", params: argon2Params{memoryKiB: maxArgon2MemoryKiB + 1, iterations: 1, parallelism: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := hashPassword("password", tt.params)
			require.Error(t, err)
		})
	}
}

func TestVerifyPasswordParseErrors(t *testing.T) {
	t.Parallel()
	const salt = "c29tZXNhbHRzb21lc2FsdA"                     // 16 bytes
	const key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" // 32 bytes
	tests := []struct {
		name    string
		encoded string
	}{
		{name: "empty", encoded: ""},
		{name: "not_phc", encoded: "plaintext-password"},
		{name: "too_few_fields", encoded: "$argon2id$v=19$m=64,t=1,p=1$" + salt},
		{name: "too_many_fields", encoded: "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "$x"},
		{name: "leading_garbage", encoded: "x$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key},
		{name: "argon2i", encoded: "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key},
		{name: "bcrypt", encoded: "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{name: "old_version", encoded: "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key},
		{name: "params_out_of_order", encoded: "$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key},
		{name: "params_missing", encoded: "$argon2id$v=19$m=64,t=1$" + salt + "$" + key},
		{name: "param_not_a_number", encoded: "$argon2id$v=19$m=lots,t=1,p=1$" + salt + "$" + key},
		{name: "param_negative", encoded: "$argon2id$v=19$m=-64,t=1,p=1$" + salt + "$" + key},
		{name: "parallelism_overflows_uint8", encoded: "$argon2id$v=19$m=4096,t=1,p=256$" + salt + "$" + key},
		// argon2.IDKey panics on these; parsing must stop them first.
		{name: "zero_iterations", encoded: "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key},
		{name: "zero_parallelism", encoded: "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key},
		{name: "memory_too_large", encoded: "$argon2id$v=19$m=4294967295,t=1,p=1$" + salt + "$" + key},
		{name: "salt_not_base64", encoded: "$argon2id$v=19$m=64,t=1,p=1$!!!!$" + key},
		{name: "salt_too_short", encoded: "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + key},
		{name: "key_not_base64", encoded: "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$!!!!"},
		{name: "key_too_short", encoded: "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$AAAA"},
		{name: "key_padded", encoded: "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ok, err := verifyPassword("password", tt.encoded)
			require.ErrorIs(t, err, errBadHash)
			require.False(t, ok)
		})
	}
}

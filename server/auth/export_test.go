package auth

// Test-only exports for the black-box tests in package auth_test.

// MemStore is the in-memory Store of this package's tests.
type MemStore = memStore

// NewMemStore returns an empty MemStore.
var NewMemStore = newMemStore

// FakeClock is a settable clock.
type FakeClock = fakeClock

// NewFakeClock returns a clock at a fixed instant.
var NewFakeClock = newFakeClock

// FastConfig is DefaultConfig with the cheapest argon2 parameters, so
// tests hash in microseconds.
func FastConfig() Config {
	c := DefaultConfig()
	c.Argon2MemoryKiB = 64
	c.Argon2Iterations = 1
	c.Argon2Parallelism = 1
	return c
}

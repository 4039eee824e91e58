package auth

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/parley-im/parley/storage"
)

// memStore is an in-memory Store for this package's unit tests. It follows
// the storage.DeviceStore contract closely enough to exercise the Service
// (token expiry, rotation, reuse revoking the device); the real backends
// are tested against the storage conformance suite, and end to end.
type memStore struct {
	mu      sync.Mutex
	users   map[string]storage.User // by id
	byName  map[string]string       // username -> id
	devices map[string]storage.Device
	tokens  map[string]*tokenRow // by string(hash)
	errs    map[string]error     // method name -> injected failure
	// getDeviceCalls counts GetDevice calls, to observe the device cache.
	getDeviceCalls int
}

type tokenRow struct {
	deviceID string
	expires  time.Time
	spent    bool
}

func newMemStore() *memStore {
	return &memStore{
		users:   map[string]storage.User{},
		byName:  map[string]string{},
		devices: map[string]storage.Device{},
		tokens:  map[string]*tokenRow{},
		errs:    map[string]error{},
	}
}

// SetErr makes every later call of method fail with err (nil clears it).
func (m *memStore) SetErr(method string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errs[method] = err
}

// GetDeviceCalls reports how many times GetDevice was called.
func (m *memStore) GetDeviceCalls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.getDeviceCalls
}

// Device returns a stored device as it is now.
func (m *memStore) Device(id string) (storage.Device, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.devices[id]
	return d, ok
}

// User returns a stored user by username.
func (m *memStore) User(username string) (storage.User, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[m.byName[username]]
	return u, ok
}

func (m *memStore) CreateUser(_ context.Context, u storage.User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.errs["CreateUser"]; err != nil {
		return err
	}
	if _, ok := m.byName[u.Username]; ok {
		return fmt.Errorf("mem: create user %s: %w", u.Username, storage.ErrConflict)
	}
	m.users[u.ID] = u
	m.byName[u.Username] = u.ID
	return nil
}

func (m *memStore) GetUserByUsername(_ context.Context, username string) (storage.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.errs["GetUserByUsername"]; err != nil {
		return storage.User{}, err
	}
	id, ok := m.byName[username]
	if !ok {
		return storage.User{}, fmt.Errorf("mem: user %s: %w", username, storage.ErrNotFound)
	}
	return m.users[id], nil
}

func (m *memStore) CreateDevice(_ context.Context, d storage.Device, first storage.RefreshToken) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.errs["CreateDevice"]; err != nil {
		return err
	}
	if _, ok := m.devices[d.ID]; ok {
		return fmt.Errorf("mem: create device %s: %w", d.ID, storage.ErrConflict)
	}
	m.devices[d.ID] = d
	m.tokens[string(first.Hash)] = &tokenRow{deviceID: d.ID, expires: first.ExpiresAt}
	return nil
}

func (m *memStore) GetDevice(_ context.Context, id string) (storage.Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.getDeviceCalls++
	if err := m.errs["GetDevice"]; err != nil {
		return storage.Device{}, err
	}
	d, ok := m.devices[id]
	if !ok {
		return storage.Device{}, fmt.Errorf("mem: device %s: %w", id, storage.ErrNotFound)
	}
	return d, nil
}

func (m *memStore) RotateRefreshToken(_ context.Context, oldHash []byte, next storage.RefreshToken, now time.Time) (storage.Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.errs["RotateRefreshToken"]; err != nil {
		return storage.Device{}, err
	}
	row, ok := m.tokens[string(oldHash)]
	if !ok || !now.Before(row.expires) {
		return storage.Device{}, fmt.Errorf("mem: rotate: %w", storage.ErrNotFound)
	}
	d := m.devices[row.deviceID]
	// Like storage/embedded, errors come with a zero Device: the contract
	// promises the device only on success.
	switch {
	case !d.RevokedAt.IsZero():
		return storage.Device{}, fmt.Errorf("mem: rotate: %w", storage.ErrRevoked)
	case row.spent:
		m.revokeLocked(d.ID, now)
		return storage.Device{}, fmt.Errorf("mem: rotate: %w", storage.ErrTokenReused)
	}
	row.spent = true
	m.tokens[string(next.Hash)] = &tokenRow{deviceID: d.ID, expires: next.ExpiresAt}
	return d, nil
}

func (m *memStore) RevokeDevice(_ context.Context, id string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.errs["RevokeDevice"]; err != nil {
		return err
	}
	if _, ok := m.devices[id]; !ok {
		return fmt.Errorf("mem: revoke %s: %w", id, storage.ErrNotFound)
	}
	m.revokeLocked(id, now)
	return nil
}

func (m *memStore) revokeLocked(id string, now time.Time) {
	d := m.devices[id]
	if d.RevokedAt.IsZero() {
		d.RevokedAt = now
		m.devices[id] = d
	}
	for _, row := range m.tokens {
		if row.deviceID == id {
			row.spent = true
		}
	}
}

// fakeClock is a settable time source shared by a test and the code under
// test, so expiry is tested without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

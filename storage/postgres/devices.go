package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/storage"
)

const deviceColumns = `id, user_id, name, created_at, revoked_at`

// CreateDevice inserts d and its first refresh token in one transaction.
// Errors wrap storage.ErrNotFound when the user does not exist and
// storage.ErrConflict when the device id or the token hash is taken.
func (s *Store) CreateDevice(ctx context.Context, d storage.Device, first storage.RefreshToken) error {
	return s.tx(ctx, "create device", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx,
			`INSERT INTO devices (`+deviceColumns+`) VALUES ($1, $2, $3, $4, $5)`,
			d.ID, d.UserID, d.Name, stamp(d.CreatedAt), optTime(d.RevokedAt)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx,
			`INSERT INTO refresh_tokens (hash, device_id, expires_at) VALUES ($1, $2, $3)`,
			first.Hash, d.ID, first.ExpiresAt.Truncate(time.Millisecond).UTC())
		return err
	})
}

// GetDevice returns a device, revoked or not, or an error wrapping
// storage.ErrNotFound.
func (s *Store) GetDevice(ctx context.Context, id string) (storage.Device, error) {
	const op = "get device"
	if err := s.check(ctx); err != nil {
		return storage.Device{}, s.fail(ctx, op, err)
	}
	d, err := scanDevice(s.pool.QueryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = $1`, id))
	if err != nil {
		return storage.Device{}, s.fail(ctx, op, err)
	}
	return d, nil
}

// RotateRefreshToken spends the token with hash oldHash and stores next for
// its device, in one transaction that holds the token's row lock, so two
// concurrent rotations of one token cannot both succeed. The checks run in
// this order:
//   - no such token: storage.ErrNotFound;
//   - the device is revoked: storage.ErrRevoked (a revoked device's tokens
//     are spent, so this comes before the reuse check);
//   - the token was spent before: the device is revoked and all its tokens
//     spent, that is committed, and the error wraps storage.ErrTokenReused
//     (reuse is detected even after expiry: it means the token leaked);
//   - the token expired (ExpiresAt <= now): storage.ErrNotFound.
//
// Otherwise the token is spent, next is live and the device is returned.
// next.DeviceID is ignored.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash []byte, next storage.RefreshToken, now time.Time) (storage.Device, error) {
	const op = "rotate refresh token"
	var (
		d      storage.Device
		reused bool
	)
	now = stamp(now)
	err := s.tx(ctx, op, func(tx pgx.Tx) error {
		var (
			deviceID string
			expires  time.Time
			spentAt  *time.Time
		)
		if err := tx.QueryRow(ctx,
			`SELECT device_id, expires_at, spent_at FROM refresh_tokens WHERE hash = $1 FOR UPDATE`, oldHash,
		).Scan(&deviceID, &expires, &spentAt); err != nil {
			return err
		}
		var err error
		d, err = scanDevice(tx.QueryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = $1`, deviceID))
		if err != nil {
			return err
		}
		switch {
		case !d.RevokedAt.IsZero():
			return storage.ErrRevoked
		case spentAt != nil:
			// Commit the revocation, then report the reuse.
			reused = true
			return revokeDevice(ctx, tx, deviceID, now)
		case !expires.After(now):
			return storage.ErrNotFound
		}
		if _, err := tx.Exec(ctx,
			`UPDATE refresh_tokens SET spent_at = $1 WHERE hash = $2`, now, oldHash); err != nil {
			return err
		}
		_, err = tx.Exec(ctx,
			`INSERT INTO refresh_tokens (hash, device_id, expires_at) VALUES ($1, $2, $3)`,
			next.Hash, deviceID, next.ExpiresAt.Truncate(time.Millisecond).UTC())
		return err
	})
	if err != nil {
		return storage.Device{}, err
	}
	if reused {
		return storage.Device{}, s.fail(ctx, op, storage.ErrTokenReused)
	}
	return d, nil
}

// RevokeDevice marks the device revoked at now and spends its live tokens.
// Revoking a revoked device changes nothing and returns nil (the first
// RevokedAt stays). Unknown ids return an error wrapping
// storage.ErrNotFound.
func (s *Store) RevokeDevice(ctx context.Context, id string, now time.Time) error {
	return s.tx(ctx, "revoke device", func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM devices WHERE id = $1 FOR UPDATE`, id).Scan(&one); err != nil {
			return err
		}
		return revokeDevice(ctx, tx, id, stamp(now))
	})
}

// ListDevices returns the user's unrevoked devices, oldest first. An
// unknown user has none.
func (s *Store) ListDevices(ctx context.Context, userID string) ([]storage.Device, error) {
	const op = "list devices"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	rows, err := s.pool.Query(ctx,
		`SELECT `+deviceColumns+` FROM devices WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Device, error) { return scanDevice(r) })
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return ds, nil
}

// revokeDevice revokes a device (keeping an earlier revocation time) and
// spends its unspent tokens.
func revokeDevice(ctx context.Context, tx pgx.Tx, id string, now time.Time) error {
	if _, err := tx.Exec(ctx,
		`UPDATE devices SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, now, id); err != nil {
		return err
	}
	_, err := tx.Exec(ctx,
		`UPDATE refresh_tokens SET spent_at = $1 WHERE device_id = $2 AND spent_at IS NULL`, now, id)
	return err
}

func scanDevice(row pgx.Row) (storage.Device, error) {
	var (
		d       storage.Device
		revoked *time.Time
	)
	if err := row.Scan(&d.ID, &d.UserID, &d.Name, &d.CreatedAt, &revoked); err != nil {
		return storage.Device{}, err
	}
	d.CreatedAt = d.CreatedAt.UTC()
	d.RevokedAt = fromOpt(revoked)
	return d, nil
}

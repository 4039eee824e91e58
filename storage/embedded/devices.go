package embedded

import (
	"context"
	"database/sql"
	"time"

	"github.com/parley-im/parley/storage"
)

const deviceColumns = `id, user_id, name, created_at, revoked_at`

// CreateDevice inserts d and its first refresh token in one transaction.
// Errors wrap storage.ErrNotFound when the user does not exist and
// storage.ErrConflict when the device id or the token hash is taken.
func (s *Store) CreateDevice(ctx context.Context, d storage.Device, first storage.RefreshToken) error {
	return s.write(ctx, "create device", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO devices (`+deviceColumns+`) VALUES (?, ?, ?, ?, ?)`,
			d.ID, d.UserID, d.Name, ms(stamp(d.CreatedAt)), ms(d.RevokedAt)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO refresh_tokens (hash, device_id, expires_at) VALUES (?, ?, ?)`,
			first.Hash, d.ID, ms(first.ExpiresAt))
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
	d, err := scanDevice(s.r.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id))
	if err != nil {
		return storage.Device{}, s.fail(ctx, op, err)
	}
	return d, nil
}

// RotateRefreshToken spends the token with hash oldHash and stores next for
// its device, in one transaction. The checks run in this order:
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
	nowMS := ms(stamp(now))
	err := s.write(ctx, op, func(tx *sql.Tx) error {
		var (
			deviceID         string
			expires, spentAt int64
		)
		if err := tx.QueryRowContext(ctx,
			`SELECT device_id, expires_at, spent_at FROM refresh_tokens WHERE hash = ?`, oldHash,
		).Scan(&deviceID, &expires, &spentAt); err != nil {
			return err
		}
		var err error
		d, err = scanDevice(tx.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ?`, deviceID))
		if err != nil {
			return err
		}
		switch {
		case !d.RevokedAt.IsZero():
			return storage.ErrRevoked
		case spentAt != 0:
			// Commit the revocation, then report the reuse.
			reused = true
			return revokeDevice(ctx, tx, deviceID, nowMS)
		case expires <= nowMS:
			return storage.ErrNotFound
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE refresh_tokens SET spent_at = ? WHERE hash = ?`, nowMS, oldHash); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO refresh_tokens (hash, device_id, expires_at) VALUES (?, ?, ?)`,
			next.Hash, deviceID, ms(next.ExpiresAt))
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
	return s.write(ctx, "revoke device", func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE id = ?`, id).Scan(&one); err != nil {
			return err
		}
		return revokeDevice(ctx, tx, id, ms(stamp(now)))
	})
}

// ListDevices returns the user's unrevoked devices, oldest first. An
// unknown user has none.
func (s *Store) ListDevices(ctx context.Context, userID string) ([]storage.Device, error) {
	const op = "list devices"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	rows, err := s.r.QueryContext(ctx,
		`SELECT `+deviceColumns+` FROM devices WHERE user_id = ? AND revoked_at = 0 ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	defer func() { _ = rows.Close() }()
	var ds []storage.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, s.fail(ctx, op, err)
		}
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return ds, nil
}

// revokeDevice revokes a device (keeping an earlier revocation time) and
// spends its unspent tokens.
func revokeDevice(ctx context.Context, tx *sql.Tx, id string, nowMS int64) error {
	if _, err := tx.ExecContext(ctx,
		`UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, nowMS, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx,
		`UPDATE refresh_tokens SET spent_at = ? WHERE device_id = ? AND spent_at = 0`, nowMS, id)
	return err
}

func scanDevice(sc scanner) (storage.Device, error) {
	var (
		d                storage.Device
		created, revoked int64
	)
	if err := sc.Scan(&d.ID, &d.UserID, &d.Name, &created, &revoked); err != nil {
		return storage.Device{}, err
	}
	d.CreatedAt = fromMS(created)
	d.RevokedAt = fromMS(revoked)
	return d, nil
}

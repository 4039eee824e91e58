package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/storage"
)

const userColumns = `id, username, display_name, password_hash, created_at`

// CreateUser inserts u. It returns an error wrapping storage.ErrConflict
// when the username (or the id) is taken. Usernames compare byte for byte:
// the server normalises them. The first user created becomes FirstUserID,
// in the same transaction: a second registration racing for an empty
// table waits on first_user's key until the first commits, then inserts
// nothing there.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	return s.tx(ctx, "create user", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5)`,
			u.ID, u.Username, u.DisplayName, u.PasswordHash, stamp(u.CreatedAt)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO first_user (user_id) VALUES ($1) ON CONFLICT DO NOTHING`, u.ID)
		return err
	})
}

// FirstUserID returns the id of the first user ever created, or an error
// wrapping storage.ErrNotFound while there is none. Once set it never
// changes (users are never deleted).
func (s *Store) FirstUserID(ctx context.Context) (string, error) {
	const op = "first user"
	if err := s.check(ctx); err != nil {
		return "", s.fail(ctx, op, err)
	}
	var id string
	if err := s.pool.QueryRow(ctx, `SELECT user_id FROM first_user`).Scan(&id); err != nil {
		return "", s.fail(ctx, op, err)
	}
	return id, nil
}

// GetUser returns the user with id, or an error wrapping
// storage.ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (storage.User, error) {
	return s.getUser(ctx, "get user", `SELECT `+userColumns+` FROM users WHERE id = $1`, id)
}

// GetUserByUsername returns the user with username, or an error wrapping
// storage.ErrNotFound.
func (s *Store) GetUserByUsername(ctx context.Context, username string) (storage.User, error) {
	return s.getUser(ctx, "get user by username", `SELECT `+userColumns+` FROM users WHERE username = $1`, username)
}

// GetUsers returns the users among ids that exist, in no particular order.
// Unknown and repeated ids are skipped; no ids means an empty result.
func (s *Store) GetUsers(ctx context.Context, ids []string) ([]storage.User, error) {
	const op = "get users"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	ids = unique(ids)
	if len(ids) == 0 {
		return []storage.User{}, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM users WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	users, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.User, error) { return scanUser(r) })
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	if users == nil {
		users = []storage.User{}
	}
	return users, nil
}

func (s *Store) getUser(ctx context.Context, op, query, arg string) (storage.User, error) {
	if err := s.check(ctx); err != nil {
		return storage.User{}, s.fail(ctx, op, err)
	}
	u, err := scanUser(s.pool.QueryRow(ctx, query, arg))
	if err != nil {
		return storage.User{}, s.fail(ctx, op, err)
	}
	return u, nil
}

func scanUser(row pgx.Row) (storage.User, error) {
	var u storage.User
	if err := row.Scan(&u.ID, &u.Username, &u.DisplayName, &u.PasswordHash, &u.CreatedAt); err != nil {
		return storage.User{}, err
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

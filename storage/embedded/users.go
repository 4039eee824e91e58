package embedded

import (
	"context"
	"database/sql"
	"strings"

	"github.com/parley-im/parley/storage"
)

// maxVars bounds the host parameters of one IN (...) list, well under
// SQLite's limit.
const maxVars = 500

const userColumns = `id, username, display_name, password_hash, created_at`

// CreateUser inserts u. It returns an error wrapping storage.ErrConflict
// when the username (or the id) is taken. Usernames compare byte for byte:
// the server normalises them. The first user created becomes FirstUserID,
// in the same transaction.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	return s.write(ctx, "create user", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?)`,
			u.ID, u.Username, u.DisplayName, u.PasswordHash, ms(stamp(u.CreatedAt))); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO first_user (one, user_id) VALUES (1, ?) ON CONFLICT DO NOTHING`, u.ID)
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
	if err := s.r.QueryRowContext(ctx, `SELECT user_id FROM first_user`).Scan(&id); err != nil {
		return "", s.fail(ctx, op, err)
	}
	return id, nil
}

// GetUser returns the user with id, or an error wrapping
// storage.ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (storage.User, error) {
	return s.getUser(ctx, "get user", `SELECT `+userColumns+` FROM users WHERE id = ?`, id)
}

// GetUserByUsername returns the user with username, or an error wrapping
// storage.ErrNotFound.
func (s *Store) GetUserByUsername(ctx context.Context, username string) (storage.User, error) {
	return s.getUser(ctx, "get user by username", `SELECT `+userColumns+` FROM users WHERE username = ?`, username)
}

// GetUsers returns the users among ids that exist, in no particular order.
// Unknown and repeated ids are skipped; no ids means an empty result.
func (s *Store) GetUsers(ctx context.Context, ids []string) ([]storage.User, error) {
	const op = "get users"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	ids = unique(ids)
	users := make([]storage.User, 0, len(ids))
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), maxVars)]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := s.r.QueryContext(ctx,
			`SELECT `+userColumns+` FROM users WHERE id IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, s.fail(ctx, op, err)
		}
		for rows.Next() {
			u, err := scanUser(rows)
			if err != nil {
				_ = rows.Close()
				return nil, s.fail(ctx, op, err)
			}
			users = append(users, u)
		}
		if err := rows.Err(); err != nil {
			return nil, s.fail(ctx, op, err)
		}
	}
	return users, nil
}

func (s *Store) getUser(ctx context.Context, op, query string, arg string) (storage.User, error) {
	if err := s.check(ctx); err != nil {
		return storage.User{}, s.fail(ctx, op, err)
	}
	u, err := scanUser(s.r.QueryRowContext(ctx, query, arg))
	if err != nil {
		return storage.User{}, s.fail(ctx, op, err)
	}
	return u, nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

func scanUser(sc scanner) (storage.User, error) {
	var (
		u       storage.User
		created int64
	)
	if err := sc.Scan(&u.ID, &u.Username, &u.DisplayName, &u.PasswordHash, &created); err != nil {
		return storage.User{}, err
	}
	u.CreatedAt = fromMS(created)
	return u, nil
}

// placeholders returns "?, ?, ..." with n marks.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// unique returns ids without repeats, in first-seen order.
func unique(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; ok {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out
}

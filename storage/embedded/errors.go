package embedded

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/parley-im/parley/storage"
)

// translate maps driver errors onto the storage sentinels. The driver's text
// is dropped for ErrNotFound and ErrConflict (it names tables and columns,
// and these errors can reach clients) and kept for ErrUnavailable, which
// an operator may need to diagnose:
//   - sql.ErrNoRows → ErrNotFound
//   - unique and primary-key violations → ErrConflict
//   - foreign-key violations → ErrNotFound (the row referred to is missing)
//   - SQLITE_BUSY/LOCKED and a closed database → ErrUnavailable
//
// Anything else is returned as it is.
func translate(err error) error {
	if err == nil || storage.IsSentinel(err) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return storage.ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return storage.ErrConflict
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return storage.ErrNotFound
		}
		switch se.Code() & 0xff { // the primary result code
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
		}
		return err
	}
	// database/sql reports a closed *sql.DB with an unexported error; its
	// text is the only handle on it.
	if errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "sql: database is closed") {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

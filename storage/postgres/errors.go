package postgres

import (
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parley-im/parley/storage"
)

// translate maps driver errors onto the storage sentinels. The server's
// text is dropped for ErrNotFound and ErrConflict (it names tables,
// constraints and values, and these errors can reach clients) and kept for
// ErrUnavailable, which an operator may need to diagnose:
//   - pgx.ErrNoRows → ErrNotFound
//   - unique violation (23505) → ErrConflict
//   - foreign-key violation (23503) → ErrNotFound (the row referred to is
//     missing)
//   - connection failures, a closed pool, the server shutting down or out
//     of connections, deadlocks and serialization failures →
//     ErrUnavailable (retrying may succeed)
//
// Anything else is returned as it is.
func translate(err error) error {
	if err == nil || storage.IsSentinel(err) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505":
			return storage.ErrConflict
		case pe.Code == "23503":
			return storage.ErrNotFound
		case pe.Code == "40001", pe.Code == "40P01", // serialization failure, deadlock
			pe.Code == "53300",                        // too many connections
			pe.Code == "55P03",                        // lock not available
			len(pe.Code) == 5 && pe.Code[:2] == "08",  // connection exception
			len(pe.Code) == 5 && pe.Code[:3] == "57P": // admin/crash shutdown, cannot connect now
			return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
		}
		return err
	}
	var (
		ce *pgconn.ConnectError
		ne net.Error
	)
	if errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) ||
		errors.Is(err, net.ErrClosed) || isClosedPool(err) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

// isClosedPool reports pgxpool's "closed pool" error, which has no
// exported value.
func isClosedPool(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == "closed pool" {
			return true
		}
	}
	return false
}

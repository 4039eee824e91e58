package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/parley-im/parley/storage"
)

// transientCodes are server exception codes that retrying later may
// clear: overload, timeouts, network trouble between servers, and an
// insert whose outcome is unknown (retrying is safe: writes collapse).
var transientCodes = map[int32]bool{
	159: true, // TIMEOUT_EXCEEDED
	160: true, // TOO_SLOW
	202: true, // TOO_MANY_SIMULTANEOUS_QUERIES
	203: true, // NO_FREE_CONNECTION
	209: true, // SOCKET_TIMEOUT
	210: true, // NETWORK_ERROR
	241: true, // MEMORY_LIMIT_EXCEEDED
	242: true, // TABLE_IS_READ_ONLY (a replica lost ZooKeeper)
	252: true, // TOO_MANY_PARTS (inserts outpace merges)
	285: true, // TOO_FEW_LIVE_REPLICAS
	319: true, // UNKNOWN_STATUS_OF_INSERT
}

// wrapErr gives a driver error the operation's name and Parley's
// sentinels. The caller's context errors are returned as they are. A
// call that ran out of its CallTimeout, a server that cannot be reached
// or that dropped the connection, and transient server exceptions wrap
// storage.ErrUnavailable (the archiver retries those later). Anything
// else (a schema mismatch, a refused login, bad input) is wrapped as it
// is: retrying does not fix it.
func wrapErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// ctx is alive, so the per-call timeout fired.
		return fmt.Errorf("clickhouse: %s: %w: timed out: %w", op, storage.ErrUnavailable, err)
	}
	var exc *ch.Exception
	if errors.As(err, &exc) {
		if transientCodes[exc.Code] {
			return fmt.Errorf("clickhouse: %s: %w: %w", op, storage.ErrUnavailable, err)
		}
		return fmt.Errorf("clickhouse: %s: %w", op, err)
	}
	if isNetwork(err) {
		return fmt.Errorf("clickhouse: %s: %w: %w", op, storage.ErrUnavailable, err)
	}
	return fmt.Errorf("clickhouse: %s: %w", op, err)
}

// isNetwork reports whether err says the server could not be talked to:
// refused, reset, timed out, cut short, or a pooled connection found
// closed.
func isNetwork(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, ch.ErrConnectionClosed) ||
		errors.Is(err, ch.ErrAcquireConnTimeout)
}

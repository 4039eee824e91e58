package server

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect/v2"

	"github.com/parley-im/parley/server/engine"
	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/storage"
)

// Errors clients see for conditions several handlers share. Their text
// names the field or the object, never an internal.
var (
	errConversationNotFound = connect.NewError(connect.CodeNotFound, "conversation_id: conversation not found")
	errUserNotFound         = connect.NewError(connect.CodeNotFound, "user not found")
	errMessageNotFound      = connect.NewError(connect.CodeNotFound, "seq: message not found")
	errMediaUnsupported     = connect.NewError(connect.CodeFailedPrecondition, "content: this server stores no media, so it takes no image or file messages")
)

// toConnect is the one place where storage, engine and hub errors become
// Connect codes. Errors already carrying a code and context errors pass
// through; anything unexpected is logged here (once) and reaches the
// client as a bare Internal error, so no SQL, path or host name leaks.
func toConnect(ctx context.Context, logger *slog.Logger, op string, err error) error {
	var ce *connect.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, storage.ErrNotMember):
		return errConversationNotFound
	case errors.Is(err, storage.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, "not found")
	case errors.Is(err, storage.ErrConflict):
		return connect.NewError(connect.CodeAlreadyExists, "already exists")
	case errors.Is(err, storage.ErrGroupFull):
		return connect.NewError(connect.CodeFailedPrecondition, "group is full")
	case errors.Is(err, storage.ErrNotGroup):
		return connect.NewError(connect.CodeFailedPrecondition, "conversation_id: not a group")
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, engine.ErrClosed):
		return connect.NewError(connect.CodeUnavailable, "service unavailable, retry later")
	// Why the hub closed a device's stream.
	case errors.Is(err, hub.ErrSlowConsumer):
		return connect.NewError(connect.CodeResourceExhausted, "slow consumer: resync from your cursors")
	case errors.Is(err, hub.ErrReplaced):
		return connect.NewError(connect.CodeAborted, "replaced by a newer stream of this device")
	case errors.Is(err, hub.ErrShutdown):
		return connect.NewError(connect.CodeUnavailable, "server shutting down, reconnect")
	case errors.Is(err, hub.ErrRevoked):
		return connect.NewError(connect.CodeUnauthenticated, "session revoked")
	case errors.Is(err, hub.ErrHeartbeatTimeout):
		return connect.NewError(connect.CodeDeadlineExceeded, "heartbeat timeout")
	default:
		logger.ErrorContext(ctx, "request failed", "procedure", op, "err", err)
		return connect.NewError(connect.CodeInternal, "internal error")
	}
}

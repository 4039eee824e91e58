package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/storage"
)

// DirectPeers returns the users who share a direct conversation with
// userID.
func (s *Store) DirectPeers(ctx context.Context, userID string) ([]string, error) {
	const op = "direct peers"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT other.user_id
		FROM members me
		JOIN conversations c ON c.id = me.conversation_id AND c.kind = $1
		JOIN members other ON other.conversation_id = me.conversation_id AND other.user_id <> me.user_id
		WHERE me.user_id = $2`, int16(storage.KindDirect), userID)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	peers, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	if peers == nil {
		peers = []string{}
	}
	return peers, nil
}

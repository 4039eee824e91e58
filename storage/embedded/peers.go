package embedded

import "context"

// kindDirect is storage.KindDirect as stored in conversations.kind.
const kindDirect = 1

// DirectPeers returns the users who share a direct conversation with
// userID.
func (s *Store) DirectPeers(ctx context.Context, userID string) ([]string, error) {
	const op = "direct peers"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	rows, err := s.r.QueryContext(ctx, `
		SELECT other.user_id
		FROM members me
		JOIN conversations c ON c.id = me.conversation_id AND c.kind = ?
		JOIN members other ON other.conversation_id = me.conversation_id AND other.user_id <> me.user_id
		WHERE me.user_id = ?`, kindDirect, userID)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	defer func() { _ = rows.Close() }()
	peers := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, s.fail(ctx, op, err)
		}
		peers = append(peers, id)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return peers, nil
}

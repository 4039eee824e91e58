package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/storage"
)

const (
	conversationColumns = `id, kind, title, owner_id, last_seq, created_at, last_message_at`
	memberColumns       = `conversation_id, user_id, role, joined_seq, last_read_seq, joined_at`
)

// GetOrCreateDirect returns the direct conversation of a and b, creating it
// with id (both members joined at seq 1, no messages) when there is none;
// created reports which. a == b is a conversation with oneself, with one
// member. Two processes creating the same pair at once end with one
// conversation: the loser's insert waits for the winner and then reads its
// row. Errors wrap storage.ErrNotFound when a user does not exist and
// storage.ErrConflict when id is taken by another conversation.
func (s *Store) GetOrCreateDirect(ctx context.Context, id, a, b string, now time.Time) (storage.Conversation, bool, error) {
	const op = "get or create direct"
	key := directKey(a, b)
	if err := s.check(ctx); err != nil {
		return storage.Conversation{}, false, s.fail(ctx, op, err)
	}
	// Fast path: the conversation usually exists.
	c, err := scanConversation(s.pool.QueryRow(ctx,
		`SELECT `+conversationColumns+` FROM conversations WHERE direct_key = $1`, key))
	switch {
	case err == nil:
		return c, false, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return storage.Conversation{}, false, s.fail(ctx, op, err)
	}

	var created bool
	err = s.tx(ctx, op, func(tx pgx.Tx) error {
		users := unique([]string{a, b})
		if err := usersExist(ctx, tx, users); err != nil {
			return err
		}
		at := stamp(now)
		var err error
		c, err = scanConversation(tx.QueryRow(ctx,
			`INSERT INTO conversations (id, kind, created_at, last_message_at, direct_key) VALUES ($1, $2, $3, $3, $4)
			ON CONFLICT (direct_key) DO NOTHING RETURNING `+conversationColumns,
			id, int16(storage.KindDirect), at, key))
		if errors.Is(err, pgx.ErrNoRows) {
			// Someone else created it since the fast path.
			c, err = scanConversation(tx.QueryRow(ctx,
				`SELECT `+conversationColumns+` FROM conversations WHERE direct_key = $1`, key))
			return err
		}
		if err != nil {
			return err
		}
		for _, u := range users {
			if err := insertMember(ctx, tx, id, u, storage.RoleMember, 1, at); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	if err != nil {
		return storage.Conversation{}, false, err
	}
	return c, created, nil
}

// CreateGroup creates a group owned by g.OwnerID with g.MemberIDs (repeats
// and the owner among them are ignored), all joined at seq 1, which is
// g.Notice. g.MaxMembers <= 0 means no limit. Errors wrap
// storage.ErrGroupFull, storage.ErrNotFound (a user does not exist) or
// storage.ErrConflict (the id is taken).
func (s *Store) CreateGroup(ctx context.Context, g storage.NewGroup) (storage.Conversation, storage.Message, error) {
	var (
		c      storage.Conversation
		notice storage.Message
	)
	members := unique(append([]string{g.OwnerID}, g.MemberIDs...))
	err := s.tx(ctx, "create group", func(tx pgx.Tx) error {
		if g.MaxMembers > 0 && len(members) > g.MaxMembers {
			return storage.ErrGroupFull
		}
		if err := usersExist(ctx, tx, members); err != nil {
			return err
		}
		at := stamp(g.CreatedAt)
		if _, err := tx.Exec(ctx,
			`INSERT INTO conversations (id, kind, title, owner_id, created_at, last_message_at) VALUES ($1, $2, $3, $4, $5, $5)`,
			g.ID, int16(storage.KindGroup), g.Title, g.OwnerID, at); err != nil {
			return err
		}
		n := g.Notice
		n.ConversationID = g.ID
		var err error
		if notice, err = appendNotice(ctx, tx, n, true); err != nil {
			return err
		}
		for i, u := range members {
			role := storage.RoleMember
			if i == 0 {
				role = storage.RoleOwner
			}
			if err := insertMember(ctx, tx, g.ID, u, role, notice.Seq, at); err != nil {
				return err
			}
		}
		if err := raiseRead(ctx, tx, g.ID, notice.SenderID, notice.Seq); err != nil {
			return err
		}
		c, err = getConversation(ctx, tx, g.ID)
		return err
	})
	if err != nil {
		return storage.Conversation{}, storage.Message{}, err
	}
	return c, notice, nil
}

// GetConversation returns a conversation, or an error wrapping
// storage.ErrNotFound.
func (s *Store) GetConversation(ctx context.Context, id string) (storage.Conversation, error) {
	const op = "get conversation"
	if err := s.check(ctx); err != nil {
		return storage.Conversation{}, s.fail(ctx, op, err)
	}
	c, err := getConversation(ctx, s.pool, id)
	if err != nil {
		return storage.Conversation{}, s.fail(ctx, op, err)
	}
	return c, nil
}

// GetMember returns a membership, or an error wrapping storage.ErrNotMember
// (also when the conversation does not exist).
func (s *Store) GetMember(ctx context.Context, conversationID, userID string) (storage.Member, error) {
	const op = "get member"
	if err := s.check(ctx); err != nil {
		return storage.Member{}, s.fail(ctx, op, err)
	}
	m, err := scanMember(s.pool.QueryRow(ctx,
		`SELECT `+memberColumns+` FROM members WHERE conversation_id = $1 AND user_id = $2`, conversationID, userID))
	if errors.Is(err, pgx.ErrNoRows) {
		err = storage.ErrNotMember
	}
	if err != nil {
		return storage.Member{}, s.fail(ctx, op, err)
	}
	return m, nil
}

// ListMembers returns a conversation's members ordered by join (the owner
// first among a group's founders), in one query. An error wraps
// storage.ErrNotFound when the conversation does not exist.
func (s *Store) ListMembers(ctx context.Context, conversationID string) ([]storage.Member, error) {
	const op = "list members"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	// The conversation row comes along (LEFT JOIN) to tell an empty group
	// from no conversation in the same snapshot.
	rows, err := s.pool.Query(ctx, `SELECT m.conversation_id, m.user_id, m.role, m.joined_seq, m.last_read_seq, m.joined_at
		FROM conversations c LEFT JOIN members m ON m.conversation_id = c.id
		WHERE c.id = $1 ORDER BY m.joined_seq, m.ord`, conversationID)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	var (
		members []storage.Member
		found   bool
	)
	for rows.Next() {
		found = true
		var (
			cid, uid     *string
			role         *int16
			joined, read *int64
			joinedAt     *time.Time
		)
		if err := rows.Scan(&cid, &uid, &role, &joined, &read, &joinedAt); err != nil {
			rows.Close()
			return nil, s.fail(ctx, op, err)
		}
		if cid == nil {
			continue // a conversation without members
		}
		members = append(members, storage.Member{
			ConversationID: *cid, UserID: *uid, Role: storage.Role(*role),
			JoinedSeq: u64(*joined), LastReadSeq: u64(*read), JoinedAt: joinedAt.UTC(),
		})
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	if !found {
		return nil, s.fail(ctx, op, storage.ErrNotFound)
	}
	return members, nil
}

// AddMembers adds userIDs (repeats ignored) to a group as RoleMember,
// joined at the seq of notice, which it appends (notice.ConversationID is
// ignored). Users who are members already are skipped. maxMembers <= 0
// means no limit. The group's row lock serialises concurrent additions, so
// the limit holds across processes. Errors wrap, in the order checked:
// storage.ErrNotFound (no such conversation or user), storage.ErrNotGroup,
// storage.ErrConflict (nobody to add), storage.ErrGroupFull.
func (s *Store) AddMembers(ctx context.Context, conversationID string, userIDs []string, maxMembers int, notice storage.NewMessage) (storage.Message, error) {
	var committed storage.Message
	notice.ConversationID = conversationID
	err := s.tx(ctx, "add members", func(tx pgx.Tx) error {
		if err := lockGroup(ctx, tx, conversationID); err != nil {
			return err
		}
		ids := unique(userIDs)
		if err := usersExist(ctx, tx, ids); err != nil {
			return err
		}
		var (
			fresh []string
			count int
		)
		if err := tx.QueryRow(ctx, `SELECT
				ARRAY(SELECT u FROM unnest($2::text[]) WITH ORDINALITY AS x (u, i)
					WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.conversation_id = $1 AND m.user_id = x.u)
					ORDER BY i),
				(SELECT COUNT(*) FROM members WHERE conversation_id = $1)`,
			conversationID, ids).Scan(&fresh, &count); err != nil {
			return err
		}
		if len(fresh) == 0 {
			return storage.ErrConflict
		}
		if maxMembers > 0 && count+len(fresh) > maxMembers {
			return storage.ErrGroupFull
		}
		var err error
		if committed, err = appendNotice(ctx, tx, notice, true); err != nil {
			return err
		}
		for _, u := range fresh {
			if err := insertMember(ctx, tx, conversationID, u, storage.RoleMember, committed.Seq, committed.CreatedAt); err != nil {
				return err
			}
		}
		return raiseRead(ctx, tx, conversationID, committed.SenderID, committed.Seq)
	})
	if err != nil {
		return storage.Message{}, err
	}
	return committed, nil
}

// RemoveMember deletes userID's membership of a group and appends notice
// (notice.ConversationID is ignored). Errors wrap storage.ErrNotFound (no
// such conversation), storage.ErrNotGroup or storage.ErrNotMember.
func (s *Store) RemoveMember(ctx context.Context, conversationID, userID string, notice storage.NewMessage) (storage.Message, error) {
	var committed storage.Message
	notice.ConversationID = conversationID
	err := s.tx(ctx, "remove member", func(tx pgx.Tx) error {
		if err := lockGroup(ctx, tx, conversationID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx,
			`DELETE FROM members WHERE conversation_id = $1 AND user_id = $2`, conversationID, userID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return storage.ErrNotMember
		}
		if committed, err = appendNotice(ctx, tx, notice, true); err != nil {
			return err
		}
		return raiseRead(ctx, tx, conversationID, committed.SenderID, committed.Seq)
	})
	if err != nil {
		return storage.Message{}, err
	}
	return committed, nil
}

// MarkRead raises the user's last_read_seq to min(seq, last_seq) and
// returns the resulting value and whether it changed, in one statement.
// An error wraps storage.ErrNotMember when the user is not a member.
func (s *Store) MarkRead(ctx context.Context, conversationID, userID string, seq uint64) (uint64, bool, error) {
	const op = "mark read"
	if err := s.check(ctx); err != nil {
		return 0, false, s.fail(ctx, op, err)
	}
	// upd raises the mark when it can; the outer query reports the value
	// either way (a plain SELECT sees the row as it was before upd).
	var (
		result  int64
		changed bool
	)
	err := s.pool.QueryRow(ctx, `WITH upd AS (
			UPDATE members m SET last_read_seq = LEAST($3::bigint, c.last_seq)
			FROM conversations c
			WHERE c.id = m.conversation_id AND m.conversation_id = $1 AND m.user_id = $2
				AND m.last_read_seq < LEAST($3::bigint, c.last_seq)
			RETURNING m.last_read_seq)
		SELECT COALESCE((SELECT last_read_seq FROM upd), m.last_read_seq), EXISTS (SELECT 1 FROM upd)
		FROM members m WHERE m.conversation_id = $1 AND m.user_id = $2`,
		conversationID, userID, i64(seq)).Scan(&result, &changed)
	if errors.Is(err, pgx.ErrNoRows) {
		err = storage.ErrNotMember
	}
	if err != nil {
		return 0, false, s.fail(ctx, op, err)
	}
	return u64(result), changed, nil
}

// directKey names the pair of a direct conversation whichever way round it
// is given.
func directKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + "|" + b
}

// querier is a pgx.Tx or the pool.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func getConversation(ctx context.Context, q querier, id string) (storage.Conversation, error) {
	return scanConversation(q.QueryRow(ctx,
		`SELECT `+conversationColumns+` FROM conversations WHERE id = $1`, id))
}

// lockGroup takes a conversation's row lock and fails with ErrNotFound or
// ErrNotGroup unless it is a group.
func lockGroup(ctx context.Context, tx pgx.Tx, id string) error {
	var kind int16
	if err := tx.QueryRow(ctx, `SELECT kind FROM conversations WHERE id = $1 FOR NO KEY UPDATE`, id).Scan(&kind); err != nil {
		return err
	}
	if storage.ConversationKind(kind) != storage.KindGroup {
		return storage.ErrNotGroup
	}
	return nil
}

// usersExist fails with ErrNotFound unless every id (no repeats) is a user.
func usersExist(ctx context.Context, tx pgx.Tx, ids []string) error {
	var n int
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM users WHERE id = ANY($1::text[])`, ids).Scan(&n); err != nil {
		return err
	}
	if n != len(ids) {
		return storage.ErrNotFound
	}
	return nil
}

// insertMember adds a membership; the member has read everything before
// joining (which they cannot see).
func insertMember(ctx context.Context, tx pgx.Tx, conversationID, userID string, role storage.Role, joinedSeq uint64, joinedAt time.Time) error {
	_, err := tx.Exec(ctx,
		`INSERT INTO members (`+memberColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		conversationID, userID, int16(role), i64(joinedSeq), i64(joinedSeq-1), joinedAt)
	return err
}

func scanConversation(row pgx.Row) (storage.Conversation, error) {
	var (
		c    storage.Conversation
		kind int16
		last int64
	)
	if err := row.Scan(&c.ID, &kind, &c.Title, &c.OwnerID, &last, &c.CreatedAt, &c.LastMessageAt); err != nil {
		return storage.Conversation{}, err
	}
	c.Kind = storage.ConversationKind(kind)
	c.LastSeq = u64(last)
	c.CreatedAt = c.CreatedAt.UTC()
	c.LastMessageAt = c.LastMessageAt.UTC()
	return c, nil
}

func scanMember(row pgx.Row) (storage.Member, error) {
	var (
		m            storage.Member
		role         int16
		joined, read int64
	)
	if err := row.Scan(&m.ConversationID, &m.UserID, &role, &joined, &read, &m.JoinedAt); err != nil {
		return storage.Member{}, err
	}
	m.Role = storage.Role(role)
	m.JoinedSeq = u64(joined)
	m.LastReadSeq = u64(read)
	m.JoinedAt = m.JoinedAt.UTC()
	return m, nil
}

package embedded

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/parley-im/parley/storage"
)

const (
	conversationColumns = `id, kind, title, owner_id, last_seq, created_at, last_message_at`
	memberColumns       = `conversation_id, user_id, role, joined_seq, last_read_seq, joined_at`
)

// GetOrCreateDirect returns the direct conversation of a and b, creating it
// with id (both members joined at seq 1, no messages) when there is none;
// created reports which. a == b is a conversation with oneself, with one
// member. Errors wrap storage.ErrNotFound when a user does not exist and
// storage.ErrConflict when id is taken by another conversation.
func (s *Store) GetOrCreateDirect(ctx context.Context, id, a, b string, now time.Time) (storage.Conversation, bool, error) {
	const op = "get or create direct"
	key := directKey(a, b)
	if err := s.check(ctx); err != nil {
		return storage.Conversation{}, false, s.fail(ctx, op, err)
	}
	// Fast path on the read pool: the conversation usually exists.
	c, err := scanConversation(s.r.QueryRowContext(ctx,
		`SELECT `+conversationColumns+` FROM conversations WHERE direct_key = ?`, key))
	switch {
	case err == nil:
		return c, false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return storage.Conversation{}, false, s.fail(ctx, op, err)
	}

	var created bool
	err = s.write(ctx, op, func(tx *sql.Tx) error {
		// Again under the write lock: another call may have created it.
		var err error
		c, err = scanConversation(tx.QueryRowContext(ctx,
			`SELECT `+conversationColumns+` FROM conversations WHERE direct_key = ?`, key))
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		users := unique([]string{a, b})
		if err := usersExist(ctx, tx, users); err != nil {
			return err
		}
		at := ms(stamp(now))
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO conversations (id, kind, created_at, last_message_at, direct_key) VALUES (?, ?, ?, ?, ?)`,
			id, int64(storage.KindDirect), at, at, key); err != nil {
			return err
		}
		for _, u := range users {
			if err := insertMember(ctx, tx, id, u, storage.RoleMember, 1, at); err != nil {
				return err
			}
		}
		created = true
		c, err = getConversation(ctx, tx, id)
		return err
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
	err := s.write(ctx, "create group", func(tx *sql.Tx) error {
		if g.MaxMembers > 0 && len(members) > g.MaxMembers {
			return storage.ErrGroupFull
		}
		if err := usersExist(ctx, tx, members); err != nil {
			return err
		}
		at := ms(stamp(g.CreatedAt))
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO conversations (id, kind, title, owner_id, created_at, last_message_at) VALUES (?, ?, ?, ?, ?, ?)`,
			g.ID, int64(storage.KindGroup), g.Title, g.OwnerID, at, at); err != nil {
			return err
		}
		a := s.appender(ctx, tx)
		n := g.Notice
		n.ConversationID = g.ID
		var err error
		if notice, err = a.membershipNotice(ctx, n); err != nil {
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
		if err := a.flush(ctx); err != nil {
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
	c, err := scanConversation(s.r.QueryRowContext(ctx,
		`SELECT `+conversationColumns+` FROM conversations WHERE id = ?`, id))
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
	m, err := scanMember(s.r.QueryRowContext(ctx,
		`SELECT `+memberColumns+` FROM members WHERE conversation_id = ? AND user_id = ?`, conversationID, userID))
	if errors.Is(err, sql.ErrNoRows) {
		err = storage.ErrNotMember
	}
	if err != nil {
		return storage.Member{}, s.fail(ctx, op, err)
	}
	return m, nil
}

// ListMembers returns a conversation's members ordered by join (the owner
// first among a group's founders). An error wraps storage.ErrNotFound when
// the conversation does not exist.
func (s *Store) ListMembers(ctx context.Context, conversationID string) ([]storage.Member, error) {
	const op = "list members"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx,
		`SELECT `+memberColumns+` FROM members WHERE conversation_id = ? ORDER BY joined_seq, rowid`, conversationID)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	var members []storage.Member
	for rows.Next() {
		m, err := scanMember(rows)
		if err != nil {
			_ = rows.Close()
			return nil, s.fail(ctx, op, err)
		}
		members = append(members, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	if len(members) == 0 {
		// Empty: tell an empty group from no conversation.
		if _, err := getConversation(ctx, tx, conversationID); err != nil {
			return nil, s.fail(ctx, op, err)
		}
	}
	return members, nil
}

// AddMembers adds userIDs (repeats ignored) to a group as RoleMember,
// joined at the seq of notice, which it appends (notice.ConversationID is
// ignored). Users who are members already are skipped. maxMembers <= 0
// means no limit. Errors wrap, in the order checked: storage.ErrNotFound
// (no such conversation or user), storage.ErrNotGroup,
// storage.ErrConflict (nobody to add), storage.ErrGroupFull.
func (s *Store) AddMembers(ctx context.Context, conversationID string, userIDs []string, maxMembers int, notice storage.NewMessage) (storage.Message, error) {
	var committed storage.Message
	notice.ConversationID = conversationID
	err := s.write(ctx, "add members", func(tx *sql.Tx) error {
		if err := requireGroup(ctx, tx, conversationID); err != nil {
			return err
		}
		ids := unique(userIDs)
		if err := usersExist(ctx, tx, ids); err != nil {
			return err
		}
		a := s.appender(ctx, tx)
		fresh := ids[:0]
		for _, u := range ids {
			ok, err := a.member(ctx, conversationID, u)
			if err != nil {
				return err
			}
			if !ok {
				fresh = append(fresh, u)
			}
		}
		if len(fresh) == 0 {
			return storage.ErrConflict
		}
		var count int
		if err := tx.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM members WHERE conversation_id = ?`, conversationID).Scan(&count); err != nil {
			return err
		}
		if maxMembers > 0 && count+len(fresh) > maxMembers {
			return storage.ErrGroupFull
		}
		var err error
		if committed, err = a.membershipNotice(ctx, notice); err != nil {
			return err
		}
		at := ms(committed.CreatedAt)
		for _, u := range fresh {
			if err := insertMember(ctx, tx, conversationID, u, storage.RoleMember, committed.Seq, at); err != nil {
				return err
			}
		}
		return a.flush(ctx)
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
	err := s.write(ctx, "remove member", func(tx *sql.Tx) error {
		if err := requireGroup(ctx, tx, conversationID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx,
			`DELETE FROM members WHERE conversation_id = ? AND user_id = ?`, conversationID, userID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return storage.ErrNotMember
		}
		a := s.appender(ctx, tx)
		if committed, err = a.membershipNotice(ctx, notice); err != nil {
			return err
		}
		return a.flush(ctx)
	})
	if err != nil {
		return storage.Message{}, err
	}
	return committed, nil
}

// MarkRead raises the user's last_read_seq to min(seq, last_seq) and
// returns the resulting value and whether it changed. An error wraps
// storage.ErrNotMember when the user is not a member.
func (s *Store) MarkRead(ctx context.Context, conversationID, userID string, seq uint64) (uint64, bool, error) {
	var (
		result  uint64
		changed bool
	)
	err := s.write(ctx, "mark read", func(tx *sql.Tx) error {
		var cur, last int64
		err := tx.QueryRowContext(ctx, `SELECT m.last_read_seq, c.last_seq
			FROM members m JOIN conversations c ON c.id = m.conversation_id
			WHERE m.conversation_id = ? AND m.user_id = ?`, conversationID, userID).Scan(&cur, &last)
		if errors.Is(err, sql.ErrNoRows) {
			return storage.ErrNotMember
		}
		if err != nil {
			return err
		}
		result = u64(cur)
		target := min(seq, u64(last))
		if target <= result {
			return nil
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE members SET last_read_seq = ? WHERE conversation_id = ? AND user_id = ?`,
			i64(target), conversationID, userID); err != nil {
			return err
		}
		result, changed = target, true
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return result, changed, nil
}

// directKey names the pair of a direct conversation whichever way round it
// is given.
func directKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + "|" + b
}

// querier is a *sql.Tx or *sql.DB.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getConversation(ctx context.Context, q querier, id string) (storage.Conversation, error) {
	return scanConversation(q.QueryRowContext(ctx,
		`SELECT `+conversationColumns+` FROM conversations WHERE id = ?`, id))
}

// requireGroup fails with ErrNotFound or ErrNotGroup unless id is a group.
func requireGroup(ctx context.Context, tx *sql.Tx, id string) error {
	var kind int64
	if err := tx.QueryRowContext(ctx, `SELECT kind FROM conversations WHERE id = ?`, id).Scan(&kind); err != nil {
		return err
	}
	if storage.ConversationKind(kind) != storage.KindGroup {
		return storage.ErrNotGroup
	}
	return nil
}

// usersExist fails with ErrNotFound unless every id (no repeats) is a user.
func usersExist(ctx context.Context, tx *sql.Tx, ids []string) error {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), maxVars)]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		var n int
		if err := tx.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM users WHERE id IN (`+placeholders(len(chunk))+`)`, args...).Scan(&n); err != nil {
			return err
		}
		if n != len(chunk) {
			return storage.ErrNotFound
		}
	}
	return nil
}

// insertMember adds a membership; the member has read everything before
// joining (which they cannot see).
func insertMember(ctx context.Context, tx *sql.Tx, conversationID, userID string, role storage.Role, joinedSeq uint64, joinedAt int64) error {
	_, err := tx.ExecContext(ctx,
		`INSERT INTO members (`+memberColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
		conversationID, userID, int64(role), i64(joinedSeq), i64(joinedSeq-1), joinedAt)
	return err
}

func scanConversation(sc scanner) (storage.Conversation, error) {
	var (
		c                 storage.Conversation
		kind, last        int64
		created, lastAtMS int64
	)
	if err := sc.Scan(&c.ID, &kind, &c.Title, &c.OwnerID, &last, &created, &lastAtMS); err != nil {
		return storage.Conversation{}, err
	}
	c.Kind = storage.ConversationKind(kind)
	c.LastSeq = u64(last)
	c.CreatedAt = fromMS(created)
	c.LastMessageAt = fromMS(lastAtMS)
	return c, nil
}

func scanMember(sc scanner) (storage.Member, error) {
	var (
		m                  storage.Member
		role, joined, read int64
		joinedAt           int64
	)
	if err := sc.Scan(&m.ConversationID, &m.UserID, &role, &joined, &read, &joinedAt); err != nil {
		return storage.Member{}, err
	}
	m.Role = storage.Role(role)
	m.JoinedSeq = u64(joined)
	m.LastReadSeq = u64(read)
	m.JoinedAt = fromMS(joinedAt)
	return m, nil
}

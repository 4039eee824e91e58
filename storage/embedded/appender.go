package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/parley-im/parley/storage"
)

const messageColumns = `conversation_id, seq, id, sender_id, sender_device_id, client_msg_id, kind, body, created_at, recalled_at, media_id`

// insertColumns are the columns an append writes. media_id keeps its
// default, the empty string, unless the message carries media
// (insertMedia).
const insertColumns = `conversation_id, seq, id, sender_id, sender_device_id, client_msg_id, kind, body, created_at, search_rowid`

// A message_search rowid is the message's creation time in unix
// milliseconds, shifted left by searchSlotBits, plus a slot number within
// the millisecond (appender.nextSearchRowid). Shifted by 16 bits, unix
// milliseconds fit a rowid's 63 bits until about the year 6400.
const (
	searchSlotBits = 16
	searchSlots    = 1 << searchSlotBits
)

// writeStmts are the statements of the write hot path (appends, read
// marks, cursors), prepared once on the write connection.
type writeStmts struct {
	lastSeq  *sql.Stmt
	isMember *sql.Stmt
	findDup  *sql.Stmt
	insert   *sql.Stmt
	// insertMedia is insert for a message carrying media: a statement of
	// its own, so that the others bind no media_id at all.
	insertMedia *sql.Stmt
	readUpTo    *sql.Stmt
	bumpConv    *sql.Stmt
	saveCursor  *sql.Stmt
	// lastSearch and insertSearch keep message_search in step with
	// appends (migration 0004).
	lastSearch   *sql.Stmt
	insertSearch *sql.Stmt
}

func (ws *writeStmts) prepare(ctx context.Context, db *sql.DB) error {
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&ws.lastSeq, `SELECT last_seq, last_message_at, members_seq FROM conversations WHERE id = ?`},
		{&ws.isMember, `SELECT 1 FROM members WHERE conversation_id = ? AND user_id = ?`},
		{&ws.findDup, `SELECT ` + messageColumns + ` FROM messages
			WHERE conversation_id = ? AND sender_id = ? AND client_msg_id = ? AND client_msg_id <> ''`},
		// A committed idempotency key makes the insert a no-op (0 rows)
		// instead of an error; any other uniqueness violation still fails.
		{&ws.insert, `INSERT INTO messages (` + insertColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (conversation_id, sender_id, client_msg_id) WHERE client_msg_id <> '' DO NOTHING`},
		{&ws.insertMedia, `INSERT INTO messages (` + insertColumns + `, media_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (conversation_id, sender_id, client_msg_id) WHERE client_msg_id <> '' DO NOTHING`},
		{&ws.readUpTo, `UPDATE members SET last_read_seq = ?1
			WHERE conversation_id = ?2 AND user_id = ?3 AND last_read_seq < ?1`},
		{&ws.bumpConv, `UPDATE conversations SET last_seq = ?, last_message_at = ?, members_seq = ? WHERE id = ?`},
		// A cursor only rises, never past the conversation's last seq, and
		// only for a known device and conversation (the WHERE also keeps
		// SQLite from reading ON CONFLICT as a join constraint).
		{&ws.saveCursor, `INSERT INTO cursors (device_id, conversation_id, seq)
			SELECT ?1, c.id, MIN(?3, c.last_seq) FROM conversations c
			WHERE c.id = ?2 AND EXISTS (SELECT 1 FROM devices d WHERE d.id = ?1)
			ON CONFLICT (device_id, conversation_id) DO UPDATE SET seq = excluded.seq
			WHERE excluded.seq > cursors.seq`},
		// FTS5 answers a rowid range in descending order from its content
		// table's b-tree: one seek, not a scan.
		{&ws.lastSearch, `SELECT rowid FROM message_search WHERE rowid BETWEEN ? AND ? ORDER BY rowid DESC LIMIT 1`},
		{&ws.insertSearch, `INSERT INTO message_search (rowid, text, conversation_id, seq) VALUES (?, ?, ?, ?)`},
	} {
		st, err := db.PrepareContext(ctx, p.query)
		if err != nil {
			return err
		}
		*p.dst = st
	}
	return nil
}

func (ws *writeStmts) close() error {
	var errs []error
	for _, st := range []*sql.Stmt{ws.lastSeq, ws.isMember, ws.findDup, ws.insert, ws.insertMedia, ws.readUpTo, ws.bumpConv, ws.saveCursor, ws.lastSearch, ws.insertSearch} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// convState is a conversation's head as a transaction moves it.
type convState struct {
	lastSeq uint64
	lastAt  int64
	// membersSeq is the seq of the newest membership change: what every
	// message appended now is committed under (storage.Message.MembersSeq).
	membersSeq uint64
	dirty      bool
}

type memberKey struct {
	conversationID, userID string
}

// appender appends messages inside one write transaction. It reads each
// conversation's head once, assigns seqs in memory (the transaction holds
// SQLite's write lock, so nobody else can) and writes the heads and the
// senders' read marks once per transaction in flush.
//
// On the hot path (AppendMessages) callers pass its methods a context
// without cancellation: the driver starts a watcher goroutine per
// statement for a cancelable context, too dear per message. They check
// cancellation between messages instead, and the transaction itself still
// rolls back when the caller's context ends.
type appender struct {
	lastSeq, isMember, findDup, insert, readUpTo, bumpConv *sql.Stmt

	// tx and insertMedia bind ws.insertMedia to the transaction on first
	// use: most transactions carry no media.
	tx          *sql.Tx
	ws          *writeStmts
	insertMedia *sql.Stmt

	// lastSearch is the highest message_search rowid of each
	// millisecond this transaction wrote or looked at (see
	// nextSearchRowid); the transaction holds the write lock, so the next
	// ones are assigned here. lastSearchSt and insertSearch are bound on
	// first use.
	lastSearch   map[int64]int64
	lastSearchSt *sql.Stmt
	insertSearch *sql.Stmt

	convs   map[string]*convState
	members map[memberKey]bool
	// reads is the highest own seq per sender, for flush.
	reads map[memberKey]uint64
}

// appender binds the prepared statements to tx. The appender lives only as
// long as the transaction.
func (s *Store) appender(ctx context.Context, tx *sql.Tx) *appender {
	return &appender{
		lastSeq:  tx.StmtContext(ctx, s.ws.lastSeq),
		isMember: tx.StmtContext(ctx, s.ws.isMember),
		findDup:  tx.StmtContext(ctx, s.ws.findDup),
		insert:   tx.StmtContext(ctx, s.ws.insert),
		readUpTo: tx.StmtContext(ctx, s.ws.readUpTo),
		bumpConv: tx.StmtContext(ctx, s.ws.bumpConv),
		tx:       tx,
		ws:       &s.ws,
		convs:    make(map[string]*convState),
		members:  make(map[memberKey]bool),
		reads:    make(map[memberKey]uint64),
	}
}

// member reports whether userID is a member of conversationID (false when
// the conversation does not exist).
func (a *appender) member(ctx context.Context, conversationID, userID string) (bool, error) {
	k := memberKey{conversationID, userID}
	if ok, cached := a.members[k]; cached {
		return ok, nil
	}
	var one int
	err := a.isMember.QueryRowContext(ctx, conversationID, userID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		a.members[k] = false
		return false, nil
	case err != nil:
		return false, err
	}
	a.members[k] = true
	return true, nil
}

// duplicate returns the committed message with m's idempotency key, if any.
func (a *appender) duplicate(ctx context.Context, m storage.NewMessage) (storage.Message, bool, error) {
	if m.ClientMsgID == "" {
		return storage.Message{}, false, nil
	}
	msg, err := scanMessage(a.findDup.QueryRowContext(ctx, m.ConversationID, m.SenderID, m.ClientMsgID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return storage.Message{}, false, nil
	case err != nil:
		return storage.Message{}, false, err
	}
	return msg, true, nil
}

// conv returns the head of a conversation, reading it on first use. The
// error wraps sql.ErrNoRows when the conversation does not exist.
func (a *appender) conv(ctx context.Context, id string) (*convState, error) {
	if c, ok := a.convs[id]; ok {
		return c, nil
	}
	var seq, at, membersSeq int64
	if err := a.lastSeq.QueryRowContext(ctx, id).Scan(&seq, &at, &membersSeq); err != nil {
		return nil, err
	}
	c := &convState{lastSeq: u64(seq), lastAt: at, membersSeq: u64(membersSeq)}
	a.convs[id] = c
	return c, nil
}

// append writes m at its conversation's next seq and returns it as
// committed, checking no membership. When m's idempotency key was
// committed before, it writes nothing and returns the original with
// inserted false. Either way the message carries the conversation's
// current MembersSeq.
func (a *appender) append(ctx context.Context, m storage.NewMessage) (msg storage.Message, inserted bool, err error) {
	c, err := a.conv(ctx, m.ConversationID)
	if err != nil {
		return storage.Message{}, false, err
	}
	msg = storage.Message{
		ID:             m.ID,
		ConversationID: m.ConversationID,
		Seq:            c.lastSeq + 1,
		SenderID:       m.SenderID,
		SenderDeviceID: m.SenderDeviceID,
		ClientMsgID:    m.ClientMsgID,
		Kind:           m.Kind,
		Body:           body(m.Body),
		MediaID:        m.MediaID,
		CreatedAt:      stamp(m.CreatedAt),
		MembersSeq:     c.membersSeq,
	}
	created := ms(msg.CreatedAt)
	var searchRowid int64
	if m.SearchText != "" {
		if searchRowid, err = a.nextSearchRowid(ctx, created); err != nil {
			return storage.Message{}, false, err
		}
	}
	var res sql.Result
	if msg.MediaID == "" {
		res, err = a.insert.ExecContext(ctx,
			msg.ConversationID, i64(msg.Seq), msg.ID, msg.SenderID, msg.SenderDeviceID,
			msg.ClientMsgID, int64(msg.Kind), msg.Body, created, searchRowid)
	} else {
		if a.insertMedia == nil {
			a.insertMedia = a.tx.StmtContext(ctx, a.ws.insertMedia)
		}
		res, err = a.insertMedia.ExecContext(ctx,
			msg.ConversationID, i64(msg.Seq), msg.ID, msg.SenderID, msg.SenderDeviceID,
			msg.ClientMsgID, int64(msg.Kind), msg.Body, created, searchRowid, msg.MediaID)
	}
	if err != nil {
		return storage.Message{}, false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return storage.Message{}, false, err
	} else if n == 0 {
		// The key was committed before: the seq stays unused.
		orig, found, err := a.duplicate(ctx, m)
		if err == nil && !found {
			err = errors.New("insert ignored without a duplicate")
		}
		orig.MembersSeq = c.membersSeq
		return orig, false, err
	}
	if searchRowid != 0 {
		if _, err := a.insertSearch.ExecContext(ctx, searchRowid, m.SearchText, msg.ConversationID, i64(msg.Seq)); err != nil {
			return storage.Message{}, false, err
		}
		a.lastSearch[created] = searchRowid
	}
	c.lastSeq = msg.Seq
	// last_message_at never goes back, even if a sender's clock does.
	c.lastAt = max(c.lastAt, created)
	c.dirty = true
	k := memberKey{msg.ConversationID, msg.SenderID}
	a.reads[k] = max(a.reads[k], msg.Seq)
	return msg, true, nil
}

// nextSearchRowid returns the message_search rowid for the next message
// with text created at createdMS: the millisecond shifted left by
// searchSlotBits, plus the next free slot of that millisecond. Rowid order
// is then creation order, which lets a search read the index newest first
// and stop after a page (search.go). The rowid is only taken (lastSearch
// moves) once the row is written, so a duplicate's is handed out again.
func (a *appender) nextSearchRowid(ctx context.Context, createdMS int64) (int64, error) {
	if a.lastSearchSt == nil {
		a.lastSearchSt = a.tx.StmtContext(ctx, a.ws.lastSearch)
		a.insertSearch = a.tx.StmtContext(ctx, a.ws.insertSearch)
		a.lastSearch = make(map[int64]int64)
	}
	base := max(createdMS, 0) << searchSlotBits
	last, ok := a.lastSearch[createdMS]
	if !ok {
		err := a.lastSearchSt.QueryRowContext(ctx, base, base+searchSlots-1).Scan(&last)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			last = base - 1
		case err != nil:
			return 0, err
		}
		a.lastSearch[createdMS] = last
	}
	if last-base+1 >= searchSlots {
		return 0, fmt.Errorf("more than %d searchable messages created in one millisecond", searchSlots)
	}
	return last + 1, nil
}

// notice appends a system notice. Notices carry no idempotency key, so one
// is always written.
func (a *appender) notice(ctx context.Context, m storage.NewMessage) (storage.Message, error) {
	msg, inserted, err := a.append(ctx, m)
	if err == nil && !inserted {
		err = storage.ErrConflict
	}
	return msg, err
}

// membershipNotice appends the system notice of a membership change: the
// conversation's members_seq becomes its seq (written by flush, in the
// same transaction), and so does the notice's MembersSeq.
func (a *appender) membershipNotice(ctx context.Context, m storage.NewMessage) (storage.Message, error) {
	msg, err := a.notice(ctx, m)
	if err != nil {
		return storage.Message{}, err
	}
	c := a.convs[msg.ConversationID]
	c.membersSeq = msg.Seq
	msg.MembersSeq = msg.Seq
	return msg, nil
}

// flush writes the moved conversation heads (members_seq included) and
// raises each sender's last_read_seq to their newest message (a no-op for
// non-members).
func (a *appender) flush(ctx context.Context) error {
	for id, c := range a.convs {
		if !c.dirty {
			continue
		}
		if _, err := a.bumpConv.ExecContext(ctx, i64(c.lastSeq), c.lastAt, i64(c.membersSeq), id); err != nil {
			return err
		}
		c.dirty = false
	}
	for k, seq := range a.reads {
		if _, err := a.readUpTo.ExecContext(ctx, i64(seq), k.conversationID, k.userID); err != nil {
			return err
		}
	}
	clear(a.reads)
	return nil
}

func scanMessage(sc scanner) (storage.Message, error) {
	var (
		m                 storage.Message
		seq, kind         int64
		created, recalled int64
	)
	if err := sc.Scan(&m.ConversationID, &seq, &m.ID, &m.SenderID, &m.SenderDeviceID,
		&m.ClientMsgID, &kind, &m.Body, &created, &recalled, &m.MediaID); err != nil {
		return storage.Message{}, err
	}
	m.Seq = u64(seq)
	m.Kind = storage.MessageKind(kind)
	m.Body = body(m.Body)
	m.CreatedAt = fromMS(created)
	m.RecalledAt = fromMS(recalled)
	return m, nil
}

// body normalises an empty body to nil, so a message reads back the same
// whichever way it was written.
func body(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

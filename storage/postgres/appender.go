package postgres

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parley-im/parley/storage"
)

const messageColumns = `conversation_id, seq, id, sender_id, sender_device_id, client_msg_id, kind, body, created_at, recalled_at, media_id`

// The statements of the append hot path. Each takes whole arrays, so a
// batch of any size costs two round trips besides BEGIN and COMMIT: one
// to lock and read, one to write.
const (
	// lockHeadsQuery takes the row locks of the batch's conversations in
	// id order (LockRows runs above the Sort), so two batches naming the
	// same conversations cannot deadlock. FOR NO KEY UPDATE leaves the
	// foreign-key checks of concurrent member and cursor inserts
	// unblocked. members_seq comes along under the same lock: membership
	// changes take it too, so it is the membership every message of the
	// batch is committed under.
	lockHeadsQuery = `SELECT id, last_seq, last_message_at, members_seq FROM conversations
		WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE`
	// membersQuery probes the members primary key per (conversation,
	// sender) pair.
	membersQuery = `SELECT m.conversation_id, m.user_id FROM members m
		JOIN unnest($1::text[], $2::text[]) AS k (c, u) ON m.conversation_id = k.c AND m.user_id = k.u`
	// dupsQuery probes the idempotency index per key, only when the
	// optimistic write failed on a committed key or a non-member's message
	// carries one. It runs after lockHeadsQuery, under a fresh
	// read-committed snapshot, so it sees every message committed by
	// whoever held a lock before us: a retry racing its original finds it
	// here.
	dupsQuery = `SELECT ` + messageColumnsM + ` FROM messages m
		JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (c, s, cm)
		ON m.conversation_id = k.c AND m.sender_id = k.s AND m.client_msg_id = k.cm
		WHERE m.client_msg_id <> ''`
	// insertQuery writes the new messages. A committed idempotency key
	// fails it (and the transaction, back to savepointWriteQuery).
	// media_id takes its default (''): a batch without media sends no
	// array for it.
	insertQuery = `INSERT INTO messages (conversation_id, seq, id, sender_id, sender_device_id, client_msg_id, kind, body, created_at)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::smallint[], $8::bytea[], $9::timestamptz[])`
	// insertMediaQuery is insertQuery for a batch where some message
	// carries media.
	insertMediaQuery = `INSERT INTO messages (conversation_id, seq, id, sender_id, sender_device_id, client_msg_id, kind, body, created_at, media_id)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::smallint[], $8::bytea[], $9::timestamptz[], $10::text[])`
	// insertSearchQuery indexes the words of the new messages that have
	// any (migration 0004); $5 is each one's words, space-separated
	// (textsearch words hold no space).
	insertSearchQuery = `INSERT INTO message_search (conversation_id, seq, created_at, text, words)
		SELECT c, s, at, t, array_to_tsvector(string_to_array(w, ' '))
		FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[]) AS v (c, s, at, t, w)`
	// savepointWriteQuery and rollbackWriteQuery bracket the optimistic
	// write.
	savepointWriteQuery = `SAVEPOINT append_write`
	rollbackWriteQuery  = `ROLLBACK TO SAVEPOINT append_write`
	// bumpHeadsQuery moves the conversations' heads; last_message_at
	// never goes back, even if a sender's clock does.
	bumpHeadsQuery = `UPDATE conversations c SET last_seq = v.seq, last_message_at = GREATEST(c.last_message_at, v.at)
		FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS v (id, seq, at) WHERE c.id = v.id`
	// readUpToQuery raises each sender's read mark to their newest
	// message (a no-op for non-members).
	readUpToQuery = `UPDATE members m SET last_read_seq = v.seq
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v (c, u, seq)
		WHERE m.conversation_id = v.c AND m.user_id = v.u AND m.last_read_seq < v.seq`

	messageColumnsM = `m.conversation_id, m.seq, m.id, m.sender_id, m.sender_device_id, m.client_msg_id, m.kind, m.body, m.created_at, m.recalled_at, m.media_id`
)

// dupKey is a message's idempotency key.
type dupKey struct {
	conversationID, senderID, clientMsgID string
}

type memberKey struct {
	conversationID, userID string
}

// head is a conversation's head as a batch moves it.
type head struct {
	lastSeq uint64
	lastAt  time.Time
	// membersSeq is read only: appends never change the membership.
	membersSeq uint64
}

// appendBatch commits msgs inside tx, as AppendMessages specifies, and
// returns their results.
//
// It is optimistic about idempotency keys: a retry of a committed message
// is rare, so the keys are not looked up before the write. The write runs
// under a savepoint, and the idempotency index rejects a committed key;
// only then does the batch roll back to the savepoint, read the committed
// keys (still under the conversations' locks, so nothing can commit one
// meanwhile) and write again.
func appendBatch(ctx context.Context, tx pgx.Tx, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	// What to read: the conversations (sorted, for the lock order) and
	// the (conversation, sender) pairs, each once.
	var (
		convIDs      []string
		pairC, pairU []string
		seenConv     = make(map[string]struct{})
		seenPair     = make(map[memberKey]struct{})
		heads        = make(map[string]head)
		members      = make(map[memberKey]struct{})
	)
	for _, m := range msgs {
		if _, ok := seenConv[m.ConversationID]; !ok {
			seenConv[m.ConversationID] = struct{}{}
			convIDs = append(convIDs, m.ConversationID)
		}
		if k := (memberKey{m.ConversationID, m.SenderID}); !has(seenPair, k) {
			seenPair[k] = struct{}{}
			pairC, pairU = append(pairC, k.conversationID), append(pairU, k.userID)
		}
	}
	slices.Sort(convIDs)

	b := &pgx.Batch{}
	b.Queue(lockHeadsQuery, convIDs)
	b.Queue(membersQuery, pairC, pairU)
	br := tx.SendBatch(ctx, b)
	err := readHeads(br, heads, members)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}

	p := plan(msgs, convIDs, heads, members, nil)
	if !p.keyedNonMember {
		if p.ins.len() == 0 {
			return p.results, nil
		}
		err = p.write(ctx, tx, true)
		if !isKeyConflict(err) {
			if err != nil {
				return nil, err
			}
			return p.results, nil
		}
		// A key was committed before.
		if _, err := tx.Exec(ctx, rollbackWriteQuery); err != nil {
			return nil, err
		}
	}

	// A key was committed before, or a non-member's message carries one
	// (its original stands even when the sender has left since): read the
	// committed keys and plan again.
	dups, err := readDups(ctx, tx, msgs)
	if err != nil {
		return nil, err
	}
	p = plan(msgs, convIDs, heads, members, dups)
	if p.ins.len() == 0 {
		return p.results, nil
	}
	if err := p.write(ctx, tx, false); err != nil {
		return nil, err
	}
	return p.results, nil
}

// batchPlan is what a batch writes and returns.
type batchPlan struct {
	results []storage.AppendResult
	ins     insertArrays
	hID     []string
	hSeq    []int64
	hAt     []time.Time
	rc, ru  []string
	rs      []int64
	// keyedNonMember is set when a message carrying an idempotency key
	// was refused as a non-member's: unless dups were given, it may be a
	// committed one.
	keyedNonMember bool
}

// plan assigns seqs in slice order, from the heads as read, given the
// memberships and the committed keys (dups).
func plan(msgs []storage.NewMessage, convIDs []string, heads map[string]head, members map[memberKey]struct{}, dups map[dupKey]storage.Message) *batchPlan {
	var (
		p     = &batchPlan{results: make([]storage.AppendResult, len(msgs))}
		moved = make(map[string]*head, len(heads))
		reads = make(map[memberKey]uint64)
		first = make(map[dupKey]int)
	)
	for i, m := range msgs {
		k := dupKey{m.ConversationID, m.SenderID, m.ClientMsgID}
		if m.ClientMsgID != "" {
			if j, ok := first[k]; ok {
				p.results[i] = p.results[j]
				p.results[i].Duplicate = p.results[j].Err == nil
				continue
			}
			first[k] = i
			if orig, ok := dups[k]; ok {
				// Committed before: the original, even when the sender
				// has left since, with the current membership version
				// (storage.Message.MembersSeq).
				orig.MembersSeq = heads[m.ConversationID].membersSeq
				p.results[i] = storage.AppendResult{Message: orig, Duplicate: true}
				continue
			}
		}
		mk := memberKey{m.ConversationID, m.SenderID}
		h := moved[m.ConversationID]
		if h == nil {
			read, ok := heads[m.ConversationID]
			if ok {
				h = &read
				moved[m.ConversationID] = h
			}
		}
		if _, ok := members[mk]; !ok || h == nil {
			p.results[i] = storage.AppendResult{Err: storage.ErrNotMember}
			p.keyedNonMember = p.keyedNonMember || m.ClientMsgID != ""
			continue
		}
		msg := newMessage(m, h.lastSeq+1)
		msg.MembersSeq = h.membersSeq
		h.lastSeq = msg.Seq
		h.lastAt = maxTime(h.lastAt, msg.CreatedAt)
		reads[mk] = max(reads[mk], msg.Seq)
		p.ins.add(msg, m.SearchText)
		p.results[i] = storage.AppendResult{Message: msg}
	}
	for _, id := range convIDs {
		if h := moved[id]; h != nil {
			p.hID, p.hSeq, p.hAt = append(p.hID, id), append(p.hSeq, i64(h.lastSeq)), append(p.hAt, h.lastAt)
		}
	}
	p.rc = make([]string, 0, len(reads))
	p.ru = make([]string, 0, len(reads))
	p.rs = make([]int64, 0, len(reads))
	for k, seq := range reads {
		p.rc, p.ru, p.rs = append(p.rc, k.conversationID), append(p.ru, k.userID), append(p.rs, i64(seq))
	}
	return p
}

// write writes the plan's messages, heads and read marks in one round
// trip, after a savepoint if asked.
func (p *batchPlan) write(ctx context.Context, tx pgx.Tx, savepoint bool) error {
	b := &pgx.Batch{}
	if savepoint {
		b.Queue(savepointWriteQuery)
	}
	b.Queue(p.ins.query(), p.ins.args()...)
	if len(p.ins.sText) > 0 {
		b.Queue(insertSearchQuery, p.ins.sConv, p.ins.sSeq, p.ins.sCreated, p.ins.sText, p.ins.sWords)
	}
	b.Queue(bumpHeadsQuery, p.hID, p.hSeq, p.hAt)
	b.Queue(readUpToQuery, p.rc, p.ru, p.rs)
	br := tx.SendBatch(ctx, b)
	var err error
	for range b.Len() {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// readHeads reads the results of the lock-and-read batch.
func readHeads(br pgx.BatchResults, heads map[string]head, members map[memberKey]struct{}) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			id              string
			seq, membersSeq int64
			at              time.Time
		)
		if err := rows.Scan(&id, &seq, &at, &membersSeq); err != nil {
			rows.Close()
			return err
		}
		heads[id] = head{lastSeq: u64(seq), lastAt: at.UTC(), membersSeq: u64(membersSeq)}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		var k memberKey
		if err := rows.Scan(&k.conversationID, &k.userID); err != nil {
			rows.Close()
			return err
		}
		members[k] = struct{}{}
	}
	return rows.Err()
}

// readDups reads the committed messages carrying the batch's idempotency
// keys.
func readDups(ctx context.Context, tx pgx.Tx, msgs []storage.NewMessage) (map[dupKey]storage.Message, error) {
	var (
		keyC, keyS, keyCM []string
		seen              = make(map[dupKey]struct{})
		dups              = make(map[dupKey]storage.Message)
	)
	for _, m := range msgs {
		if m.ClientMsgID == "" {
			continue
		}
		if k := (dupKey{m.ConversationID, m.SenderID, m.ClientMsgID}); !has(seen, k) {
			seen[k] = struct{}{}
			keyC, keyS, keyCM = append(keyC, k.conversationID), append(keyS, k.senderID), append(keyCM, k.clientMsgID)
		}
	}
	rows, err := tx.Query(ctx, dupsQuery, keyC, keyS, keyCM)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		msg, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		dups[dupKey{msg.ConversationID, msg.SenderID, msg.ClientMsgID}] = msg
	}
	return dups, rows.Err()
}

// isKeyConflict reports whether err is a violation of the idempotency
// index.
func isKeyConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "messages_client_msg_id"
}

// appendNotice appends a system notice at its conversation's next seq,
// taking the conversation's row lock (if the transaction does not hold it
// already). Notices carry no idempotency key, so one is always written;
// should one carry a committed key, the error wraps storage.ErrConflict.
// The sender's read mark is not touched: call raiseRead once the
// memberships are as they should be.
//
// A membership notice (membership true) records a membership change: the
// conversation's members_seq becomes its seq, in the same statement that
// takes the seq. Either way the notice comes back with its MembersSeq.
func appendNotice(ctx context.Context, tx pgx.Tx, m storage.NewMessage, membership bool) (storage.Message, error) {
	created := stamp(m.CreatedAt)
	var seq, membersSeq int64
	// SET reads the row as it was, so both new values are last_seq + 1.
	if err := tx.QueryRow(ctx, `UPDATE conversations SET last_seq = last_seq + 1,
		last_message_at = GREATEST(last_message_at, $2),
		members_seq = CASE WHEN $3 THEN last_seq + 1 ELSE members_seq END
		WHERE id = $1 RETURNING last_seq, members_seq`,
		m.ConversationID, created, membership).Scan(&seq, &membersSeq); err != nil {
		return storage.Message{}, err
	}
	msg := newMessage(m, u64(seq))
	msg.MembersSeq = u64(membersSeq)
	tag, err := tx.Exec(ctx, `INSERT INTO messages (conversation_id, seq, id, sender_id, sender_device_id, client_msg_id, kind, body, created_at, media_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (conversation_id, sender_id, client_msg_id) WHERE client_msg_id <> '' DO NOTHING`,
		msg.ConversationID, seq, msg.ID, msg.SenderID, msg.SenderDeviceID, msg.ClientMsgID, int16(msg.Kind), msg.Body, msg.CreatedAt,
		msg.MediaID)
	if err != nil {
		return storage.Message{}, err
	}
	if tag.RowsAffected() == 0 {
		return storage.Message{}, storage.ErrConflict
	}
	return msg, nil
}

// raiseRead raises a member's read mark to seq (a no-op for a
// non-member).
func raiseRead(ctx context.Context, tx pgx.Tx, conversationID, userID string, seq uint64) error {
	_, err := tx.Exec(ctx, `UPDATE members SET last_read_seq = $3
		WHERE conversation_id = $1 AND user_id = $2 AND last_read_seq < $3`, conversationID, userID, i64(seq))
	return err
}

// insertArrays are the columns of insertQuery, and of insertMediaQuery
// once a message with media is added.
type insertArrays struct {
	conv, id, sender, device, cmid []string
	seq                            []int64
	kind                           []int16
	body                           [][]byte
	created                        []time.Time
	// media stays nil until a message carries media, so that a batch
	// without any costs what it did before media existed.
	media []string
	// The columns of insertSearchQuery, for the messages with text.
	sConv, sText, sWords []string
	sSeq                 []int64
	sCreated             []time.Time
}

func (a *insertArrays) add(m storage.Message, searchText string) {
	if searchText != "" {
		a.sConv = append(a.sConv, m.ConversationID)
		a.sSeq = append(a.sSeq, i64(m.Seq))
		a.sCreated = append(a.sCreated, m.CreatedAt)
		a.sText = append(a.sText, searchText)
		a.sWords = append(a.sWords, lexemes(searchText))
	}
	if m.MediaID != "" && a.media == nil {
		// The messages added so far carry none.
		a.media = make([]string, len(a.id), cap(a.id))
	}
	if a.media != nil {
		a.media = append(a.media, m.MediaID)
	}
	a.conv = append(a.conv, m.ConversationID)
	a.seq = append(a.seq, i64(m.Seq))
	a.id = append(a.id, m.ID)
	a.sender = append(a.sender, m.SenderID)
	a.device = append(a.device, m.SenderDeviceID)
	a.cmid = append(a.cmid, m.ClientMsgID)
	a.kind = append(a.kind, int16(m.Kind))
	a.body = append(a.body, m.Body)
	a.created = append(a.created, m.CreatedAt)
}

func (a *insertArrays) len() int { return len(a.id) }

// query is the insert statement for the arrays' columns.
func (a *insertArrays) query() string {
	if a.media != nil {
		return insertMediaQuery
	}
	return insertQuery
}

func (a *insertArrays) args() []any {
	if a.media != nil {
		return []any{a.conv, a.seq, a.id, a.sender, a.device, a.cmid, a.kind, a.body, a.created, a.media}
	}
	return []any{a.conv, a.seq, a.id, a.sender, a.device, a.cmid, a.kind, a.body, a.created}
}

// newMessage is m as committed at seq.
func newMessage(m storage.NewMessage, seq uint64) storage.Message {
	return storage.Message{
		ID:             m.ID,
		ConversationID: m.ConversationID,
		Seq:            seq,
		SenderID:       m.SenderID,
		SenderDeviceID: m.SenderDeviceID,
		ClientMsgID:    m.ClientMsgID,
		Kind:           m.Kind,
		Body:           body(m.Body),
		MediaID:        m.MediaID,
		CreatedAt:      stamp(m.CreatedAt),
	}
}

func scanMessage(row pgx.Row) (storage.Message, error) {
	var (
		m        storage.Message
		seq      int64
		kind     int16
		recalled *time.Time
	)
	if err := row.Scan(&m.ConversationID, &seq, &m.ID, &m.SenderID, &m.SenderDeviceID,
		&m.ClientMsgID, &kind, &m.Body, &m.CreatedAt, &recalled, &m.MediaID); err != nil {
		return storage.Message{}, err
	}
	m.Seq = u64(seq)
	m.Kind = storage.MessageKind(kind)
	m.Body = body(m.Body)
	m.CreatedAt = m.CreatedAt.UTC()
	m.RecalledAt = fromOpt(recalled)
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

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func has[K comparable](m map[K]struct{}, k K) bool {
	_, ok := m[k]
	return ok
}

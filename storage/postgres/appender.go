package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/storage"
)

const messageColumns = `conversation_id, seq, id, sender_id, sender_device_id, client_msg_id, kind, body, created_at, recalled_at`

// The statements of the append hot path. Each takes whole arrays, so a
// batch of any size costs two round trips besides BEGIN and COMMIT: one
// to lock and read, one to write.
const (
	// lockHeadsQuery takes the row locks of the batch's conversations in
	// id order (LockRows runs above the Sort), so two batches naming the
	// same conversations cannot deadlock. FOR NO KEY UPDATE leaves the
	// foreign-key checks of concurrent member and cursor inserts
	// unblocked.
	lockHeadsQuery = `SELECT id, last_seq, last_message_at FROM conversations
		WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE`
	// membersQuery probes the members primary key per (conversation,
	// sender) pair.
	membersQuery = `SELECT m.conversation_id, m.user_id FROM members m
		JOIN unnest($1::text[], $2::text[]) AS k (c, u) ON m.conversation_id = k.c AND m.user_id = k.u`
	// dupsQuery probes the idempotency index per key. It runs after
	// lockHeadsQuery in the same batch, under a fresh read-committed
	// snapshot, so it sees every message committed by whoever held a lock
	// before us: a retry racing its original finds it here.
	dupsQuery = `SELECT ` + messageColumnsM + ` FROM messages m
		JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (c, s, cm)
		ON m.conversation_id = k.c AND m.sender_id = k.s AND m.client_msg_id = k.cm
		WHERE m.client_msg_id <> ''`
	// insertQuery writes the new messages. The conversation locks make a
	// conflict impossible; ON CONFLICT turns one into a short count
	// (reported as an error) rather than a gap.
	insertQuery = `INSERT INTO messages (conversation_id, seq, id, sender_id, sender_device_id, client_msg_id, kind, body, created_at)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::smallint[], $8::bytea[], $9::timestamptz[])
		ON CONFLICT (conversation_id, sender_id, client_msg_id) WHERE client_msg_id <> '' DO NOTHING`
	// bumpHeadsQuery moves the conversations' heads; last_message_at
	// never goes back, even if a sender's clock does.
	bumpHeadsQuery = `UPDATE conversations c SET last_seq = v.seq, last_message_at = GREATEST(c.last_message_at, v.at)
		FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS v (id, seq, at) WHERE c.id = v.id`
	// readUpToQuery raises each sender's read mark to their newest
	// message (a no-op for non-members).
	readUpToQuery = `UPDATE members m SET last_read_seq = v.seq
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v (c, u, seq)
		WHERE m.conversation_id = v.c AND m.user_id = v.u AND m.last_read_seq < v.seq`

	messageColumnsM = `m.conversation_id, m.seq, m.id, m.sender_id, m.sender_device_id, m.client_msg_id, m.kind, m.body, m.created_at, m.recalled_at`
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
	dirty   bool
}

// appendBatch commits msgs inside tx, as AppendMessages specifies, and
// returns their results.
func appendBatch(ctx context.Context, tx pgx.Tx, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	// What to read: the conversations (sorted, for the lock order), the
	// (conversation, sender) pairs and the idempotency keys, each once.
	var (
		convIDs      []string
		pairC, pairU []string
		keyC, keyS   []string
		keyCM        []string
		seenConv     = make(map[string]struct{})
		seenPair     = make(map[memberKey]struct{})
		seenKey      = make(map[dupKey]struct{})
		results      = make([]storage.AppendResult, len(msgs))
		heads        = make(map[string]*head)
		members      = make(map[memberKey]struct{})
		dups         = make(map[dupKey]storage.Message)
		reads        = make(map[memberKey]uint64)
		first        = make(map[dupKey]int)
		ins          insertArrays
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
		if m.ClientMsgID != "" {
			if k := (dupKey{m.ConversationID, m.SenderID, m.ClientMsgID}); !has(seenKey, k) {
				seenKey[k] = struct{}{}
				keyC, keyS, keyCM = append(keyC, k.conversationID), append(keyS, k.senderID), append(keyCM, k.clientMsgID)
			}
		}
	}
	slices.Sort(convIDs)

	b := &pgx.Batch{}
	b.Queue(lockHeadsQuery, convIDs)
	b.Queue(membersQuery, pairC, pairU)
	if len(keyC) > 0 {
		b.Queue(dupsQuery, keyC, keyS, keyCM)
	}
	br := tx.SendBatch(ctx, b)
	err := readHeads(br, heads, members, dups, len(keyC) > 0)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}

	// Assign seqs in slice order.
	for i, m := range msgs {
		k := dupKey{m.ConversationID, m.SenderID, m.ClientMsgID}
		if m.ClientMsgID != "" {
			if j, ok := first[k]; ok {
				results[i] = results[j]
				results[i].Duplicate = results[j].Err == nil
				continue
			}
			first[k] = i
			if orig, ok := dups[k]; ok {
				// Committed before: the original, even when the sender
				// has left since.
				results[i] = storage.AppendResult{Message: orig, Duplicate: true}
				continue
			}
		}
		mk := memberKey{m.ConversationID, m.SenderID}
		h := heads[m.ConversationID]
		if _, ok := members[mk]; !ok || h == nil {
			results[i] = storage.AppendResult{Err: storage.ErrNotMember}
			continue
		}
		msg := newMessage(m, h.lastSeq+1)
		h.lastSeq = msg.Seq
		h.lastAt = maxTime(h.lastAt, msg.CreatedAt)
		h.dirty = true
		reads[mk] = max(reads[mk], msg.Seq)
		ins.add(msg)
		results[i] = storage.AppendResult{Message: msg}
	}
	if ins.len() == 0 {
		return results, nil
	}

	b = &pgx.Batch{}
	b.Queue(insertQuery, ins.args()...)
	var hID []string
	var hSeq []int64
	var hAt []time.Time
	for _, id := range convIDs {
		if h := heads[id]; h != nil && h.dirty {
			hID, hSeq, hAt = append(hID, id), append(hSeq, i64(h.lastSeq)), append(hAt, h.lastAt)
		}
	}
	b.Queue(bumpHeadsQuery, hID, hSeq, hAt)
	rc := make([]string, 0, len(reads))
	ru := make([]string, 0, len(reads))
	rs := make([]int64, 0, len(reads))
	for k, seq := range reads {
		rc, ru, rs = append(rc, k.conversationID), append(ru, k.userID), append(rs, i64(seq))
	}
	b.Queue(readUpToQuery, rc, ru, rs)
	br = tx.SendBatch(ctx, b)
	tag, err := br.Exec()
	if err == nil && tag.RowsAffected() != int64(ins.len()) {
		err = fmt.Errorf("insert of %d messages wrote %d: an idempotency key was committed concurrently", ins.len(), tag.RowsAffected())
	}
	for range 2 {
		if err != nil {
			break
		}
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return results, nil
}

// readHeads reads the results of the lock-and-read batch.
func readHeads(br pgx.BatchResults, heads map[string]*head, members map[memberKey]struct{}, dups map[dupKey]storage.Message, withDups bool) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			id  string
			seq int64
			at  time.Time
		)
		if err := rows.Scan(&id, &seq, &at); err != nil {
			rows.Close()
			return err
		}
		heads[id] = &head{lastSeq: u64(seq), lastAt: at.UTC()}
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
	if err := rows.Err(); err != nil {
		return err
	}
	if !withDups {
		return nil
	}
	rows, err = br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		msg, err := scanMessage(rows)
		if err != nil {
			rows.Close()
			return err
		}
		dups[dupKey{msg.ConversationID, msg.SenderID, msg.ClientMsgID}] = msg
	}
	return rows.Err()
}

// appendNotice appends a system notice at its conversation's next seq,
// taking the conversation's row lock (if the transaction does not hold it
// already). Notices carry no idempotency key, so one is always written;
// should one carry a committed key, the error wraps storage.ErrConflict.
// The sender's read mark is not touched: call raiseRead once the
// memberships are as they should be.
func appendNotice(ctx context.Context, tx pgx.Tx, m storage.NewMessage) (storage.Message, error) {
	created := stamp(m.CreatedAt)
	var seq int64
	if err := tx.QueryRow(ctx, `UPDATE conversations SET last_seq = last_seq + 1,
		last_message_at = GREATEST(last_message_at, $2) WHERE id = $1 RETURNING last_seq`,
		m.ConversationID, created).Scan(&seq); err != nil {
		return storage.Message{}, err
	}
	msg := newMessage(m, u64(seq))
	tag, err := tx.Exec(ctx, `INSERT INTO messages (conversation_id, seq, id, sender_id, sender_device_id, client_msg_id, kind, body, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (conversation_id, sender_id, client_msg_id) WHERE client_msg_id <> '' DO NOTHING`,
		msg.ConversationID, seq, msg.ID, msg.SenderID, msg.SenderDeviceID, msg.ClientMsgID, int16(msg.Kind), msg.Body, msg.CreatedAt)
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

// insertArrays are the columns of insertQuery.
type insertArrays struct {
	conv, id, sender, device, cmid []string
	seq                            []int64
	kind                           []int16
	body                           [][]byte
	created                        []time.Time
}

func (a *insertArrays) add(m storage.Message) {
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

func (a *insertArrays) args() []any {
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
		&m.ClientMsgID, &kind, &m.Body, &m.CreatedAt, &recalled); err != nil {
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

package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/textsearch"
)

// messageColumns are the columns an ArchivedMessage is read from, in Scan
// order.
const messageColumns = `conversation_id, seq, message_id, sender_id, sender_device_id, client_msg_id,
	kind, body, media_id, created_at, created_at_nsec, edited, edited_at, edited_at_nsec,
	recalled, recalled_at, recalled_at_nsec, version, search_text`

// insertColumns are the columns WriteMessages fills, in Append order:
// messageColumns and the derived search_words. They are named in the
// INSERT: without names, clickhouse-go (v2.30+) inserts nothing and
// reports no error. archived_at takes its DEFAULT.
const insertColumns = messageColumns + `, search_words`

// ArchivedMessage is one state of a message as the archive keeps it.
type ArchivedMessage struct {
	ConversationID string
	// Seq is the message's position in its conversation; with
	// ConversationID, its identity in the archive. Must be positive.
	Seq            uint64
	ID             string
	SenderID       string
	SenderDeviceID string
	ClientMsgID    string
	Kind           storage.MessageKind
	// Body is the content. WriteMessages writes it empty when RecalledAt
	// is set, whatever it holds.
	Body    []byte
	MediaID string
	// SearchText is the message's searchable text (storage.NewMessage's
	// SearchText): a text message's body, an image or file's caption;
	// empty for none. SearchMessages finds the message by its words.
	// WriteMessages writes it empty when RecalledAt is set, like Body.
	SearchText string
	// CreatedAt is when the message was committed. Required, from 1970 to
	// 2105 (DateTime's range), and the same in every state of a message:
	// it picks the partition, and states in different partitions are
	// never collapsed.
	CreatedAt time.Time
	// EditedAt is when the message was last edited; zero if never.
	EditedAt time.Time
	// RecalledAt is when the message was recalled; zero if not.
	RecalledAt time.Time
	// Version orders the states of a message: readers see the state with
	// the highest Version, and among equal Versions any one of them (so
	// rewriting a state is harmless). Zero means StateVersion(m), which
	// suits states derived from the primary store: a recall or an edit is
	// later than what it changes.
	Version uint64
}

// NewArchivedMessage is the archive's state of m; Version is left zero
// (StateVersion).
func NewArchivedMessage(m storage.Message) ArchivedMessage {
	return ArchivedMessage{
		ConversationID: m.ConversationID,
		Seq:            m.Seq,
		ID:             m.ID,
		SenderID:       m.SenderID,
		SenderDeviceID: m.SenderDeviceID,
		ClientMsgID:    m.ClientMsgID,
		Kind:           m.Kind,
		Body:           m.Body,
		MediaID:        m.MediaID,
		CreatedAt:      m.CreatedAt,
		RecalledAt:     m.RecalledAt,
	}
}

// StateVersion is the default Version of m: the latest of CreatedAt,
// EditedAt and RecalledAt in Unix nanoseconds.
func StateVersion(m ArchivedMessage) uint64 {
	latest := m.CreatedAt
	for _, t := range []time.Time{m.EditedAt, m.RecalledAt} {
		if t.After(latest) {
			latest = t
		}
	}
	if latest.Before(time.Unix(0, 0)) {
		return 0
	}
	return uint64(latest.UnixNano())
}

// WriteMessages inserts msgs in one batch (one INSERT, one part on the
// server). It is all or nothing from the caller's point of view: on an
// error, some rows may have been written, and writing the same batch
// again is safe, since readers see each message once. Input errors (a
// missing ConversationID, Seq 0, CreatedAt out of DateTime's range) are
// reported before anything is sent. Server trouble wraps
// storage.ErrUnavailable. An empty msgs does nothing.
func (db *DB) WriteMessages(ctx context.Context, msgs []ArchivedMessage) error {
	if db.closed.Load() {
		return errClosed("write messages")
	}
	if len(msgs) == 0 {
		return nil
	}
	for i := range msgs {
		if err := validate(&msgs[i]); err != nil {
			return fmt.Errorf("clickhouse: write messages: message %d: %w", i, err)
		}
	}
	cctx, cancel := db.call(ctx)
	defer cancel()
	batch, err := db.conn.PrepareBatch(cctx, "INSERT INTO messages ("+insertColumns+")")
	if err != nil {
		return wrapErr(ctx, "write messages: prepare", err)
	}
	// Abort after Send is a no-op; it releases the connection otherwise.
	defer func() { _ = batch.Abort() }()
	for i := range msgs {
		m := &msgs[i]
		body, text := m.Body, m.SearchText
		recalled := !m.RecalledAt.IsZero()
		if recalled {
			body, text = nil, ""
		}
		version := m.Version
		if version == 0 {
			version = StateVersion(*m)
		}
		created, createdNsec := splitTime(m.CreatedAt)
		edited, editedNsec := splitTime(m.EditedAt)
		recalledAt, recalledNsec := splitTime(m.RecalledAt)
		if err := batch.Append(
			m.ConversationID, m.Seq, m.ID, m.SenderID, m.SenderDeviceID, m.ClientMsgID,
			uint8(m.Kind), body, m.MediaID, created, createdNsec,
			flag(!m.EditedAt.IsZero()), edited, editedNsec,
			flag(recalled), recalledAt, recalledNsec, version, text, searchWords(text),
		); err != nil {
			return fmt.Errorf("clickhouse: write messages: message %d: %w", i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return wrapErr(ctx, fmt.Sprintf("write messages: send %d rows", len(msgs)), err)
	}
	return nil
}

// Messages returns the archived messages of conversationID with fromSeq
// <= seq <= toSeq in seq order, at most limit of them (limit <= 0 means
// no limit), each in its latest state (FINAL collapses replays, edits
// and recalls). Version is the state's version; SearchText is empty for
// rows written before the archive kept it (migration 0003).
func (db *DB) Messages(ctx context.Context, conversationID string, fromSeq, toSeq uint64, limit int) ([]ArchivedMessage, error) {
	if db.closed.Load() {
		return nil, errClosed("read messages")
	}
	query := "SELECT " + messageColumns + ` FROM messages FINAL
		WHERE conversation_id = ? AND seq >= ? AND seq <= ?
		ORDER BY seq`
	args := []any{conversationID, fromSeq, toSeq}
	if limit > 0 {
		query += " LIMIT ?"
		args = append(args, limit)
	}
	cctx, cancel := db.call(ctx)
	defer cancel()
	rows, err := db.conn.Query(cctx, query, args...)
	if err != nil {
		return nil, wrapErr(ctx, "read messages", err)
	}
	defer rows.Close()
	var out []ArchivedMessage
	for rows.Next() {
		m, err := scanArchived(rows)
		if err != nil {
			return nil, wrapErr(ctx, "read messages: scan", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr(ctx, "read messages", err)
	}
	return out, nil
}

// Count returns how many distinct messages the archive holds (after
// FINAL: replays and later states count once).
func (db *DB) Count(ctx context.Context) (uint64, error) {
	if db.closed.Load() {
		return 0, errClosed("count messages")
	}
	cctx, cancel := db.call(ctx)
	defer cancel()
	var n uint64
	if err := db.conn.QueryRow(cctx, `SELECT count() FROM messages FINAL`).Scan(&n); err != nil {
		return 0, wrapErr(ctx, "count messages", err)
	}
	return n, nil
}

// scanArchived reads one row of messageColumns.
func scanArchived(rows driver.Rows, extra ...any) (ArchivedMessage, error) {
	var (
		m                                     ArchivedMessage
		kind, edited, recalled                uint8
		body                                  string
		createdAt, editedAt, recalledAt       time.Time
		createdNsec, editedNsec, recalledNsec uint32
	)
	dest := []any{
		&m.ConversationID, &m.Seq, &m.ID, &m.SenderID, &m.SenderDeviceID, &m.ClientMsgID,
		&kind, &body, &m.MediaID, &createdAt, &createdNsec, &edited, &editedAt, &editedNsec,
		&recalled, &recalledAt, &recalledNsec, &m.Version, &m.SearchText,
	}
	if err := rows.Scan(append(dest, extra...)...); err != nil {
		return ArchivedMessage{}, err
	}
	m.Kind = storage.MessageKind(kind)
	if body != "" {
		m.Body = []byte(body)
	}
	m.CreatedAt = joinTime(createdAt, createdNsec)
	if edited != 0 {
		m.EditedAt = joinTime(editedAt, editedNsec)
	}
	if recalled != 0 {
		m.RecalledAt = joinTime(recalledAt, recalledNsec)
	}
	return m, nil
}

// searchWords is the search_words value of text: a space, then each
// distinct folded word of text (as textsearch.Words splits and folds
// them) followed by a space; empty when text has no word. No word holds a
// space, so ' w ' occurs in it exactly when w is one of the words, and
// ' p' when a word starts with p.
//
// It splits text itself and folds only the words that are not ASCII with
// textsearch.Fold: Unicode normalization of every word was most of
// WriteMessages' CPU time. TestSearchWords holds it to textsearch.Words.
func searchWords(text string) string {
	var (
		b     strings.Builder
		seen  = make(map[string]bool)
		lower = make([]byte, 0, 32)
	)
	add := func(w string) {
		if w == "" || seen[w] {
			return
		}
		seen[w] = true
		if b.Len() == 0 {
			b.Grow(len(text) + 2)
			b.WriteByte(' ')
		}
		b.WriteString(w)
		b.WriteByte(' ')
	}
	start, ascii := -1, true
	end := func(i int) {
		if ascii {
			lower = lower[:0]
			for j := start; j < i; j++ {
				c := text[j]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				lower = append(lower, c)
			}
			add(string(lower))
		} else {
			add(textsearch.Fold(text[start:i]))
		}
		start, ascii = -1, true
	}
	for i, r := range text {
		if !isWordRune(r) {
			if start >= 0 {
				end(i)
			}
			continue
		}
		if start < 0 {
			start = i
		}
		if r >= utf8.RuneSelf {
			ascii = false
		}
	}
	if start >= 0 {
		end(len(text))
	}
	return b.String()
}

// isWordRune is textsearch's rule: letters, numbers and combining marks.
func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
	}
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Mn, r)
}

// minTime and maxTime bound DateTime (UInt32 seconds since the epoch).
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(1<<32-1, 0)
)

// validate reports input the table cannot hold.
func validate(m *ArchivedMessage) error {
	switch {
	case m.ConversationID == "":
		return errors.New("empty conversation id")
	case m.Seq == 0:
		return errors.New("seq 0")
	case m.CreatedAt.IsZero():
		return errors.New("zero created_at")
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"created_at", m.CreatedAt}, {"edited_at", m.EditedAt}, {"recalled_at", m.RecalledAt}} {
		if !f.t.IsZero() && (f.t.Before(minTime) || f.t.After(maxTime)) {
			return fmt.Errorf("%s %s outside DateTime's range (1970 to 2106)", f.name, f.t.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// splitTime is t as DateTime and its sub-second part; the zero time is
// DateTime 0.
func splitTime(t time.Time) (time.Time, uint32) {
	if t.IsZero() {
		return minTime, 0
	}
	return t.Truncate(time.Second), uint32(t.Nanosecond())
}

// joinTime undoes splitTime, in UTC.
func joinTime(t time.Time, nsec uint32) time.Time {
	return time.Unix(t.Unix(), int64(nsec)).UTC()
}

func flag(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func errClosed(op string) error {
	return fmt.Errorf("clickhouse: %s: %w: closed", op, storage.ErrUnavailable)
}

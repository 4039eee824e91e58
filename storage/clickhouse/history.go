package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/parley-im/parley/storage"
)

// History returns a page of the archived messages of q.ConversationID
// with max(q.MinSeq, 1) <= seq <= maxSeq, paged as
// storage.MessageStore.History specifies: Before takes the q.Limit
// messages nearest below q.Anchor (q.Anchor 0 means from maxSeq
// included), After the q.Limit messages nearest above it. The page is in
// ascending seq order; the bool reports whether more messages lie beyond
// it in q.Direction within the range. Each message is in its latest
// state (what FINAL gives): Body nil and RecalledAt set once recalled,
// MembersSeq 0.
//
// maxSeq is the highest seq the caller reads from the archive (the
// primary store's boundary); 0 yields an empty page. An empty
// ConversationID, a Limit below 1 or an unknown Direction is an error
// naming the field, and nothing is queried. Server trouble wraps
// storage.ErrUnavailable. Safe for concurrent use.
func (db *DB) History(ctx context.Context, q storage.HistoryQuery, maxSeq uint64) ([]storage.Message, bool, error) {
	const op = "history"
	if db.closed.Load() {
		return nil, false, errClosed(op)
	}
	switch {
	case q.ConversationID == "":
		return nil, false, errors.New("clickhouse: history: empty ConversationID")
	case q.Limit < 1:
		return nil, false, fmt.Errorf("clickhouse: history: Limit %d, want at least 1", q.Limit)
	case q.Direction != storage.Before && q.Direction != storage.After:
		return nil, false, fmt.Errorf("clickhouse: history: Direction %d is neither Before nor After", q.Direction)
	}
	lo, hi := max(q.MinSeq, 1), maxSeq
	order := "DESC"
	if q.Direction == storage.Before {
		if q.Anchor != 0 {
			hi = min(hi, q.Anchor-1)
		}
	} else {
		order = "ASC"
		if q.Anchor == math.MaxUint64 {
			return nil, false, nil
		}
		lo = max(lo, q.Anchor+1)
	}
	if lo > hi {
		return nil, false, nil
	}
	// One row past the page tells whether there is more: the nearest
	// Limit+1 to the anchor, inside [lo, hi].
	//
	// Each message in its latest state without FINAL: ordered by seq and
	// version descending, LIMIT 1 BY seq keeps each message's row with
	// the highest version, which is what FINAL keeps (among equal
	// versions any one, which ArchivedMessage.Version allows). On 18.16
	// FINAL costs several times more (docs/benchmarks.md): it reads and
	// merges every granule of every part the key range touches, and a
	// conversation's rows are in every month's part.
	query := "SELECT " + messageColumns + ` FROM messages
		WHERE conversation_id = ? AND seq >= ? AND seq <= ?
		ORDER BY seq ` + order + `, version DESC LIMIT 1 BY seq LIMIT ?`
	cctx, cancel := db.call(ctx)
	defer cancel()
	rows, err := db.conn.Query(cctx, query, q.ConversationID, lo, hi, uint64(q.Limit)+1)
	if err != nil {
		return nil, false, wrapErr(ctx, op, err)
	}
	defer rows.Close()
	var page []storage.Message
	for rows.Next() {
		m, err := scanArchived(rows)
		if err != nil {
			return nil, false, wrapErr(ctx, op+": scan", err)
		}
		page = append(page, m.Message())
	}
	if err := rows.Err(); err != nil {
		return nil, false, wrapErr(ctx, op, err)
	}
	more := len(page) > q.Limit
	if more {
		page = page[:q.Limit]
	}
	if q.Direction == storage.Before {
		slices.Reverse(page)
	}
	return page, more, nil
}

// Message is m as the primary store returns it: Body nil once recalled,
// MembersSeq 0 (the archive does not keep it).
func (m ArchivedMessage) Message() storage.Message {
	out := storage.Message{
		ID:             m.ID,
		ConversationID: m.ConversationID,
		Seq:            m.Seq,
		SenderID:       m.SenderID,
		SenderDeviceID: m.SenderDeviceID,
		ClientMsgID:    m.ClientMsgID,
		Kind:           m.Kind,
		Body:           m.Body,
		MediaID:        m.MediaID,
		CreatedAt:      m.CreatedAt,
		RecalledAt:     m.RecalledAt,
	}
	if !m.RecalledAt.IsZero() {
		out.Body = nil
	}
	return out
}

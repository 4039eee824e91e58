// Package history reads a conversation's messages across the primary
// store's recent window and the archive, so that a reader cannot tell
// where one ends and the other begins.
//
// The store keeps each conversation from its boundary (ArchivedSeq) up;
// the archive holds everything at or below it (storage.HotWindow). A page
// that crosses the boundary is read from both and joined: the archive's
// part below, the store's above. A trim may move the boundary between the
// two reads; the reader then reads the page again, so no message falls
// between them.
package history

import (
	"context"
	"fmt"

	"github.com/parley-im/parley/storage"
)

// maxAttempts bounds the re-reads when trims keep moving the boundary
// under a page (a trim moves it once per conversation and pass, so a
// second read nearly always settles it).
const maxAttempts = 4

// Hot is the primary store's side.
type Hot interface {
	// History is storage.HistoryStore's: it returns only messages above
	// the conversation's boundary.
	History(ctx context.Context, q storage.HistoryQuery) ([]storage.Message, bool, error)
	ArchivedSeq(ctx context.Context, conversationID string) (uint64, error)
	ArchivedRanges(ctx context.Context, userID, conversationID string) ([]storage.ArchivedRange, error)
}

// Archive is the archive's read side.
type Archive interface {
	// History pages like storage.HistoryStore.History, over the archived
	// messages with seq at most maxSeq.
	History(ctx context.Context, q storage.HistoryQuery, maxSeq uint64) ([]storage.Message, bool, error)
	// Search finds messages like storage.SearchStore.SearchMessages (its
	// order, cursor and paging), within ranges only: q.UserID and
	// q.ConversationID are already applied to them.
	Search(ctx context.Context, q storage.SearchQuery, ranges []storage.ArchivedRange) ([]storage.SearchHit, bool, error)
}

// Reader joins the two. It is safe for concurrent use.
type Reader struct {
	hot     Hot
	archive Archive
}

// New returns a Reader of hot and archive.
func New(hot Hot, archive Archive) *Reader {
	return &Reader{hot: hot, archive: archive}
}

// History returns a page as storage.HistoryStore.History does, over the
// whole history: the store's window and the archive below it.
func (r *Reader) History(ctx context.Context, q storage.HistoryQuery) ([]storage.Message, bool, error) {
	boundary, err := r.hot.ArchivedSeq(ctx, q.ConversationID)
	if err != nil {
		return nil, false, err
	}
	for attempt := 1; ; attempt++ {
		msgs, more, err := r.page(ctx, q, boundary)
		if err != nil {
			return nil, false, err
		}
		after, err := r.hot.ArchivedSeq(ctx, q.ConversationID)
		if err != nil {
			return nil, false, err
		}
		if after == boundary {
			return msgs, more, nil
		}
		if attempt == maxAttempts {
			return nil, false, fmt.Errorf("history: %s: the archive boundary moved under %d reads in a row: %w",
				q.ConversationID, attempt, storage.ErrUnavailable)
		}
		boundary = after
	}
}

// page reads q as if the boundary were at boundary.
func (r *Reader) page(ctx context.Context, q storage.HistoryQuery, boundary uint64) ([]storage.Message, bool, error) {
	lowest := max(q.MinSeq, 1)
	if boundary < lowest {
		// Nothing this reader may see is archived.
		return r.hot.History(ctx, q)
	}
	limit := max(q.Limit, 1)
	archived := q
	archived.MinSeq = lowest
	switch q.Direction {
	case storage.Before:
		if q.Anchor != 0 && q.Anchor <= boundary+1 {
			return r.archive.History(ctx, archived, boundary)
		}
		hot, _, err := r.hot.History(ctx, q)
		if err != nil || len(hot) >= limit {
			// A full page: the archive has at least lowest..boundary
			// beyond it.
			return hot, err == nil, err
		}
		archived.Anchor, archived.Limit = boundary+1, limit-len(hot)
		old, more, err := r.archive.History(ctx, archived, boundary)
		if err != nil {
			return nil, false, err
		}
		return append(old, hot...), more, nil
	case storage.After:
		if q.Anchor >= boundary {
			return r.hot.History(ctx, q)
		}
		old, _, err := r.archive.History(ctx, archived, boundary)
		if err != nil || len(old) >= limit {
			// A full page: the store has at least the conversation's
			// newest message beyond it (a trim never passes it).
			return old, err == nil, err
		}
		rest := q
		rest.Anchor, rest.Limit = boundary, limit-len(old)
		hot, more, err := r.hot.History(ctx, rest)
		if err != nil {
			return nil, false, err
		}
		return append(old, hot...), more, nil
	default:
		return r.hot.History(ctx, q)
	}
}

// SearchArchived finds q's messages in the archived history of the
// conversations q.UserID may read (from their join points), as
// storage.SearchStore.SearchMessages does in the store's window. No
// archived range means no hits, without asking the archive.
func (r *Reader) SearchArchived(ctx context.Context, q storage.SearchQuery) ([]storage.SearchHit, bool, error) {
	ranges, err := r.hot.ArchivedRanges(ctx, q.UserID, q.ConversationID)
	if err != nil || len(ranges) == 0 {
		return nil, false, err
	}
	return r.archive.Search(ctx, q, ranges)
}

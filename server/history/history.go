// Package history reads a conversation's messages across the primary
// store's recent window and the archive, so that a reader cannot tell
// where one ends and the other begins.
//
// The store keeps each conversation above its boundary (ArchivedSeq); the
// archive holds everything at or below it (storage.HotWindow). Seqs are
// contiguous from 1, and the store's History reads its boundary in the
// same statement as its rows, so a page from the store says by itself
// where the archive must take over: below the lowest seq it returned
// (Before), or in the gap between the anchor and the first seq it
// returned (After). A trim may move the boundary after that read; the
// archive then holds those messages too, so no re-read is needed.
package history

import (
	"context"

	"github.com/parley-im/parley/storage"
)

// Hot is the primary store's side.
type Hot interface {
	// History is storage.HistoryStore's: it returns only messages above
	// the conversation's boundary.
	History(ctx context.Context, q storage.HistoryQuery) ([]storage.Message, bool, error)
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
// whole history: the store's window and the archive below it. It reads
// the store, then the archive only when the store's page leaves a part
// of the request to it.
func (r *Reader) History(ctx context.Context, q storage.HistoryQuery) ([]storage.Message, bool, error) {
	hot, more, err := r.hot.History(ctx, q)
	if err != nil {
		return nil, false, err
	}
	lowest := max(q.MinSeq, 1)
	limit := max(q.Limit, 1)
	archived := q
	archived.MinSeq = lowest
	switch q.Direction {
	case storage.Before:
		// Below the page's lowest seq, or below the anchor when the store
		// had nothing there (the newest message is never trimmed, so an
		// empty page from the top means an empty conversation).
		top := q.Anchor
		if len(hot) > 0 {
			top = hot[0].Seq
		}
		if top <= lowest {
			return hot, false, nil
		}
		if len(hot) >= limit {
			// Contiguous seqs: lowest..top-1 exist, in one store or the
			// other.
			return hot, true, nil
		}
		archived.Anchor, archived.Limit = top, limit-len(hot)
		old, oldMore, err := r.archive.History(ctx, archived, top-1)
		if err != nil {
			return nil, false, err
		}
		return append(old, hot...), oldMore, nil
	case storage.After:
		// The store's page starts above the boundary; a gap between the
		// anchor and its first seq is archived. With no page, nothing lies
		// beyond the anchor (the newest message is never trimmed).
		from := max(q.Anchor+1, lowest)
		if len(hot) == 0 || hot[0].Seq <= from {
			return hot, more, nil
		}
		archived.Anchor, archived.Limit = from-1, limit
		old, _, err := r.archive.History(ctx, archived, hot[0].Seq-1)
		if err != nil {
			return nil, false, err
		}
		if len(old) >= limit {
			// The store's page, at least, lies beyond.
			return old[:limit], true, nil
		}
		rest := limit - len(old)
		if len(hot) > rest {
			hot, more = hot[:rest], true
		}
		return append(old, hot...), more, nil
	default:
		return hot, more, nil
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

package postgres

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/storage"
)

const mediaColumns = `id, uploader_id, blob_key, size, content_type, file_name, width, height,
	thumb_key, thumb_size, thumb_content_type, thumb_width, thumb_height, created_at`

// The statements of the media store.
const (
	// touchBlobsQuery marks blob keys in use at $2. The keys come sorted,
	// so two markings lock their rows in the same order and cannot
	// deadlock. last_used_at never goes back, so an upload recorded with
	// an earlier time cannot shorten a later touch's grace period.
	touchBlobsQuery = `INSERT INTO blobs (key, last_used_at)
		SELECT k, $2 FROM unnest($1::text[]) AS k
		ON CONFLICT (key) DO UPDATE SET last_used_at = GREATEST(blobs.last_used_at, excluded.last_used_at)`

	// canReadMediaQuery is one row when the media exists: whether the
	// user uploaded it, or is a member of a conversation holding a live
	// (not recalled) message that references it at or after the member's
	// join point. The members primary key is probed per referencing
	// message, found through messages_media_id.
	canReadMediaQuery = `SELECT md.uploader_id = $1 OR EXISTS (
			SELECT 1 FROM messages x
			JOIN members mb ON mb.conversation_id = x.conversation_id AND mb.user_id = $1
			WHERE x.media_id = $2 AND x.media_id <> '' AND x.recalled_at IS NULL AND mb.joined_seq <= x.seq)
		FROM media md WHERE md.id = $2`

	// sweepMediaQuery deletes up to $2 of the oldest uploads created
	// before $1 that no live message references. SKIP LOCKED: a
	// concurrent sweep (another process) takes other rows instead of
	// waiting for these. = ANY (ARRAY(...)) rather than IN: the generic
	// plan of IN joined the chosen ids to a scan of the whole table.
	sweepMediaQuery = `DELETE FROM media WHERE id = ANY (ARRAY(
		SELECT md.id FROM media md
		WHERE md.created_at < $1 AND NOT EXISTS (
			SELECT 1 FROM messages x WHERE x.media_id = md.id AND x.media_id <> '' AND x.recalled_at IS NULL)
		ORDER BY md.created_at LIMIT $2
		FOR UPDATE SKIP LOCKED))`

	// sweepBlobsQuery forgets, and returns, the blob keys marked in use
	// before $1 that no upload uses, as its bytes or its thumbnail. See
	// SweepMedia for why the rows are locked with SKIP LOCKED first.
	sweepBlobsQuery = `WITH dead AS (
			SELECT b.key FROM blobs b
			WHERE b.last_used_at < $1
			AND NOT EXISTS (SELECT 1 FROM media md WHERE md.blob_key = b.key)
			AND NOT EXISTS (SELECT 1 FROM media md WHERE md.thumb_key = b.key AND md.thumb_key <> '')
			FOR UPDATE SKIP LOCKED)
		DELETE FROM blobs USING dead WHERE blobs.key = dead.key
		RETURNING blobs.key`
)

// CreateMedia records m (a zero CreatedAt means now) and marks its blob
// and thumbnail keys in use at m.CreatedAt, in one transaction. An error
// wraps storage.ErrConflict when m.ID exists; nothing is written then.
func (s *Store) CreateMedia(ctx context.Context, m storage.Media) error {
	created := stamp(m.CreatedAt)
	return s.tx(ctx, "create media", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO media (`+mediaColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			m.ID, m.UploaderID, m.BlobKey, m.Size, m.ContentType, m.FileName,
			int64(m.Width), int64(m.Height), m.ThumbKey, m.ThumbSize, m.ThumbContentType,
			int64(m.ThumbWidth), int64(m.ThumbHeight), created); err != nil {
			return err
		}
		return touchBlobs(ctx, tx, []string{m.BlobKey, m.ThumbKey}, created)
	})
}

// TouchBlobs marks keys in use at now (zero means the current time), in
// one statement; a key's mark never goes back. Empty keys are skipped.
func (s *Store) TouchBlobs(ctx context.Context, keys []string, now time.Time) error {
	at := stamp(now)
	return s.tx(ctx, "touch blobs", func(tx pgx.Tx) error {
		return touchBlobs(ctx, tx, keys, at)
	})
}

// GetMedia returns a media record, or an error wrapping
// storage.ErrNotFound.
func (s *Store) GetMedia(ctx context.Context, id string) (storage.Media, error) {
	const op = "get media"
	if err := s.check(ctx); err != nil {
		return storage.Media{}, s.fail(ctx, op, err)
	}
	m, err := scanMedia(s.pool.QueryRow(ctx, `SELECT `+mediaColumns+` FROM media WHERE id = $1`, id))
	if err != nil {
		return storage.Media{}, s.fail(ctx, op, err)
	}
	return m, nil
}

// CanReadMedia reports whether userID may read mediaID, in one query: it
// uploaded it, or it is a current member of a conversation holding a
// message that references it, is not recalled, and lies at or after the
// member's join point. An error wraps storage.ErrNotFound when the media
// does not exist.
func (s *Store) CanReadMedia(ctx context.Context, userID, mediaID string) (bool, error) {
	const op = "can read media"
	if err := s.check(ctx); err != nil {
		return false, s.fail(ctx, op, err)
	}
	var ok bool
	if err := s.pool.QueryRow(ctx, canReadMediaQuery, userID, mediaID).Scan(&ok); err != nil {
		return false, s.fail(ctx, op, err)
	}
	return ok, nil
}

// SweepMedia deletes up to limit of the oldest media created before
// olderThan that no live message references (limit <= 0 deletes none),
// then forgets and returns the blob keys no media uses any more that were
// last marked in use before olderThan. Both run in one transaction, the
// second statement seeing the first's deletions, so a key freed by this
// sweep is returned by this sweep.
//
// Races with CreateMedia and TouchBlobs (from any process), which upsert
// the key's blobs row, under read committed. The second statement locks
// the rows it is about to delete (FOR UPDATE SKIP LOCKED), and a locked
// row is rechecked as it is then (last_used_at < olderThan), not as the
// statement's snapshot saw it. A marking therefore either:
//   - committed before the lock: the recheck sees its last_used_at, which
//     is not before olderThan as long as the caller's grace period exceeds
//     the clock skew between processes, and spares the key (a
//     CreateMedia's record uses the key besides, and a marking that
//     committed before the statement began is seen by its NOT EXISTS);
//   - holds the row, uncommitted: SKIP LOCKED passes over it, so the key
//     is spared, and the sweep never waits for a marker (a marker and a
//     sweep waiting for each other's rows, in different orders, would
//     otherwise deadlock);
//   - inserts the row fresh: the sweep cannot see an uncommitted insert;
//   - arrives after the sweep locked the row: it waits, the sweep deletes
//     the row and returns the key, and the marking then inserts a fresh
//     row. Nothing the store does can help then: the key is in the
//     sweeper's hands, and its BlobStore.Delete races the marker's
//     BlobStore.Put. That window is the caller's to close, e.g. by
//     deleting a returned blob only when BlobStore.Stat shows no write
//     since the sweep began.
//
// Two sweeps skip each other's locked rows, so a key is returned by one
// of them only.
func (s *Store) SweepMedia(ctx context.Context, olderThan time.Time, limit int) ([]string, error) {
	var dead []string
	err := s.tx(ctx, "sweep media", func(tx pgx.Tx) error {
		dead = dead[:0]
		if limit > 0 {
			if _, err := tx.Exec(ctx, sweepMediaQuery, olderThan, limit); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, sweepBlobsQuery, olderThan)
		if err != nil {
			return err
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		dead = keys
		return err
	})
	if err != nil {
		return nil, err
	}
	return dead, nil
}

// touchBlobs marks keys in use at at, skipping empty keys and repeats,
// in key order.
func touchBlobs(ctx context.Context, tx pgx.Tx, keys []string, at time.Time) error {
	keys = slices.DeleteFunc(unique(keys), func(k string) bool { return k == "" })
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	_, err := tx.Exec(ctx, touchBlobsQuery, keys, at)
	return err
}

func scanMedia(row pgx.Row) (storage.Media, error) {
	var (
		m                                storage.Media
		width, height, thWidth, thHeight int64
	)
	if err := row.Scan(&m.ID, &m.UploaderID, &m.BlobKey, &m.Size, &m.ContentType, &m.FileName,
		&width, &height, &m.ThumbKey, &m.ThumbSize, &m.ThumbContentType, &thWidth, &thHeight,
		&m.CreatedAt); err != nil {
		return storage.Media{}, err
	}
	m.Width, m.Height = u32(width), u32(height)
	m.ThumbWidth, m.ThumbHeight = u32(thWidth), u32(thHeight)
	m.CreatedAt = m.CreatedAt.UTC()
	return m, nil
}

// u32 converts a pixel size read back; it was stored from a uint32.
func u32(v int64) uint32 {
	if v < 0 || v > math.MaxUint32 {
		return 0
	}
	return uint32(v)
}

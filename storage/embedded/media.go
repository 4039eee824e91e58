package embedded

import (
	"context"
	"database/sql"
	"math"
	"slices"
	"time"

	"github.com/parley-im/parley/storage"
)

const mediaColumns = `id, uploader_id, blob_key, size, content_type, file_name, width, height,
	thumb_key, thumb_size, thumb_content_type, thumb_width, thumb_height, created_at`

// The statements of the media store.
const (
	// touchBlobQuery marks a blob key in use at ?2; last_used_at never
	// goes back, so an upload recorded with an earlier time cannot shorten
	// a later touch's grace period.
	touchBlobQuery = `INSERT INTO blobs (key, last_used_at) VALUES (?1, ?2)
		ON CONFLICT (key) DO UPDATE SET last_used_at = MAX(last_used_at, excluded.last_used_at)`

	// canReadMediaQuery is one row when the media exists: whether the
	// user uploaded it, or is a member of a conversation holding a live
	// (not recalled) message that references it at or after the member's
	// join point. The members primary key is probed per referencing
	// message, found through messages_media_id: CROSS JOIN pins that
	// order, since SQLite would otherwise walk the user's memberships
	// (members_user_id), however many they are.
	canReadMediaQuery = `SELECT md.uploader_id = ?1 OR EXISTS (
			SELECT 1 FROM messages x
			CROSS JOIN members mb ON mb.conversation_id = x.conversation_id AND mb.user_id = ?1
			WHERE x.media_id = ?2 AND x.media_id <> '' AND x.recalled_at = 0 AND mb.joined_seq <= x.seq)
		FROM media md WHERE md.id = ?2`

	// sweepMediaQuery deletes up to ?2 of the oldest uploads created
	// before ?1 that no live message references.
	sweepMediaQuery = `DELETE FROM media WHERE id IN (
		SELECT md.id FROM media md
		WHERE md.created_at < ?1 AND NOT EXISTS (
			SELECT 1 FROM messages x WHERE x.media_id = md.id AND x.media_id <> '' AND x.recalled_at = 0)
		ORDER BY md.created_at LIMIT ?2)`

	// sweepBlobsQuery forgets, and returns, the blob keys marked in use
	// before ?1 that no upload uses, as its bytes or its thumbnail.
	sweepBlobsQuery = `DELETE FROM blobs
		WHERE last_used_at < ?1
		AND NOT EXISTS (SELECT 1 FROM media md WHERE md.blob_key = blobs.key)
		AND NOT EXISTS (SELECT 1 FROM media md WHERE md.thumb_key = blobs.key AND md.thumb_key <> '')
		RETURNING key`
)

// CreateMedia records m (a zero CreatedAt means now) and marks its blob
// and thumbnail keys in use at m.CreatedAt, in one transaction. An error
// wraps storage.ErrConflict when m.ID exists; nothing is written then.
func (s *Store) CreateMedia(ctx context.Context, m storage.Media) error {
	created := ms(stamp(m.CreatedAt))
	return s.write(ctx, "create media", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO media (`+mediaColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			m.ID, m.UploaderID, m.BlobKey, m.Size, m.ContentType, m.FileName,
			int64(m.Width), int64(m.Height), m.ThumbKey, m.ThumbSize, m.ThumbContentType,
			int64(m.ThumbWidth), int64(m.ThumbHeight), created); err != nil {
			return err
		}
		return touchBlobs(ctx, tx, []string{m.BlobKey, m.ThumbKey}, created)
	})
}

// TouchBlobs marks keys in use at now (zero means the current time); a
// key's mark never goes back. Empty keys are skipped.
func (s *Store) TouchBlobs(ctx context.Context, keys []string, now time.Time) error {
	at := ms(stamp(now))
	return s.write(ctx, "touch blobs", func(tx *sql.Tx) error {
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
	m, err := scanMedia(s.r.QueryRowContext(ctx, `SELECT `+mediaColumns+` FROM media WHERE id = ?`, id))
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
	if err := s.r.QueryRowContext(ctx, canReadMediaQuery, userID, mediaID).Scan(&ok); err != nil {
		return false, s.fail(ctx, op, err)
	}
	return ok, nil
}

// SweepMedia deletes up to limit of the oldest media created before
// olderThan that no live message references (limit <= 0 deletes none),
// then forgets and returns the blob keys no media uses any more that were
// last marked in use before olderThan, all in one write transaction, so a
// key freed by this sweep's deletions is returned by this sweep.
//
// Races with CreateMedia and TouchBlobs: all three are write
// transactions on the single write connection (BEGIN IMMEDIATE), so each
// marking is wholly before or wholly after a sweep.
//   - Before: it set the key's last_used_at to its own time, which is
//     not before olderThan as long as the caller's grace period exceeds
//     the clock skew between the marker and the sweeper, so the sweep
//     spares the key (and a CreateMedia's record uses the key besides).
//   - After: the sweep has already forgotten and returned the key, and
//     the marking writes a fresh row for it. Nothing the store does can
//     help then: the key is in the sweeper's hands, and its
//     BlobStore.Delete races the marker's BlobStore.Put. That window is
//     the caller's to close, e.g. by deleting a returned blob only when
//     BlobStore.Stat shows no write since the sweep began.
//
// Two sweeps are ordered the same way, so a key is returned by one of
// them only.
func (s *Store) SweepMedia(ctx context.Context, olderThan time.Time, limit int) ([]string, error) {
	cutoff := ms(olderThan)
	var dead []string
	err := s.write(ctx, "sweep media", func(tx *sql.Tx) error {
		dead = dead[:0]
		if limit > 0 {
			if _, err := tx.ExecContext(ctx, sweepMediaQuery, cutoff, limit); err != nil {
				return err
			}
		}
		rows, err := tx.QueryContext(ctx, sweepBlobsQuery, cutoff)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var key string
			if err := rows.Scan(&key); err != nil {
				return err
			}
			dead = append(dead, key)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return dead, nil
}

// touchBlobs marks keys in use at the unix-millisecond time at, skipping
// empty keys and repeats.
func touchBlobs(ctx context.Context, tx *sql.Tx, keys []string, at int64) error {
	keys = slices.DeleteFunc(unique(keys), func(k string) bool { return k == "" })
	if len(keys) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, touchBlobQuery)
	if err != nil {
		return err
	}
	defer func() { _ = st.Close() }()
	for _, k := range keys {
		if _, err := st.ExecContext(ctx, k, at); err != nil {
			return err
		}
	}
	return nil
}

func scanMedia(sc scanner) (storage.Media, error) {
	var (
		m                                storage.Media
		width, height, thWidth, thHeight int64
		created                          int64
	)
	if err := sc.Scan(&m.ID, &m.UploaderID, &m.BlobKey, &m.Size, &m.ContentType, &m.FileName,
		&width, &height, &m.ThumbKey, &m.ThumbSize, &m.ThumbContentType, &thWidth, &thHeight,
		&created); err != nil {
		return storage.Media{}, err
	}
	m.Width, m.Height = u32(width), u32(height)
	m.ThumbWidth, m.ThumbHeight = u32(thWidth), u32(thHeight)
	m.CreatedAt = fromMS(created)
	return m, nil
}

// u32 converts a pixel size read back; it was stored from a uint32.
func u32(v int64) uint32 {
	if v < 0 || v > math.MaxUint32 {
		return 0
	}
	return uint32(v)
}

-- 0003: media (storage.MediaStore): the uploads, the blob keys the sweeper
-- must spare for a while, and messages.media_id, the reference that lets a
-- conversation's members read an upload (CanReadMedia).
--
-- Existing rows stay valid: a message written before has media_id '' (no
-- media), which is also what every message without media gets. ADD COLUMN
-- with a constant default rewrites no rows, and the index is partial, so
-- it starts empty and messages without media never enter it: the append
-- path pays one empty column per row and nothing more.

-- media is one upload. There is no foreign key on uploader_id: the server
-- checks the uploader, as it does senders.
CREATE TABLE media (
	id                 TEXT PRIMARY KEY,
	uploader_id        TEXT NOT NULL,
	blob_key           TEXT NOT NULL,
	size               INTEGER NOT NULL,
	content_type       TEXT NOT NULL,
	file_name          TEXT NOT NULL DEFAULT '',
	width              INTEGER NOT NULL DEFAULT 0,
	height             INTEGER NOT NULL DEFAULT 0,
	thumb_key          TEXT NOT NULL DEFAULT '',
	thumb_size         INTEGER NOT NULL DEFAULT 0,
	thumb_content_type TEXT NOT NULL DEFAULT '',
	thumb_width        INTEGER NOT NULL DEFAULT 0,
	thumb_height       INTEGER NOT NULL DEFAULT 0,
	created_at         INTEGER NOT NULL
) STRICT;

-- SweepMedia walks the oldest uploads first, and asks of a blob key
-- whether any upload still uses it (as its bytes or its thumbnail).
CREATE INDEX media_created_at ON media (created_at);
CREATE INDEX media_blob_key ON media (blob_key);
CREATE INDEX media_thumb_key ON media (thumb_key) WHERE thumb_key <> '';

-- blobs is when each blob key was last marked in use (CreateMedia,
-- TouchBlobs): the sweeper forgets a key, and has its bytes deleted, only
-- once no upload uses it and the grace period has passed.
CREATE TABLE blobs (
	key          TEXT PRIMARY KEY,
	last_used_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX blobs_last_used_at ON blobs (last_used_at);

ALTER TABLE messages ADD COLUMN media_id TEXT NOT NULL DEFAULT '';

-- CanReadMedia and SweepMedia: the messages referencing an upload.
-- Queries repeat the index's condition (media_id <> '') so that the
-- planner may use it for a bound parameter.
CREATE INDEX messages_media_id ON messages (media_id) WHERE media_id <> '';

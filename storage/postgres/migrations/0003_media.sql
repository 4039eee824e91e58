-- 0003: media (storage.MediaStore): the uploads, the blob keys the sweeper
-- must spare for a while, and messages.media_id, the reference that lets a
-- conversation's members read an upload (CanReadMedia).
--
-- Existing rows stay valid: a message written before has media_id '' (no
-- media), which is also what every message without media gets. ADD COLUMN
-- with a constant default rewrites no rows. The index is partial, so
-- messages without media never enter it, but building it reads the whole
-- messages table once, holding off writes to it meanwhile (CREATE INDEX
-- CONCURRENTLY cannot run inside the migration's transaction): on a large
-- deployment, expect the migration to take as long as a sequential scan of
-- messages.
--
-- Widths and heights are bigint: they are uint32, which integer cannot
-- hold whole.

-- media is one upload. There is no foreign key on uploader_id: the server
-- checks the uploader, as it does senders.
CREATE TABLE media (
	id                 text PRIMARY KEY,
	uploader_id        text NOT NULL,
	blob_key           text NOT NULL,
	size               bigint NOT NULL,
	content_type       text NOT NULL,
	file_name          text NOT NULL DEFAULT '',
	width              bigint NOT NULL DEFAULT 0,
	height             bigint NOT NULL DEFAULT 0,
	thumb_key          text NOT NULL DEFAULT '',
	thumb_size         bigint NOT NULL DEFAULT 0,
	thumb_content_type text NOT NULL DEFAULT '',
	thumb_width        bigint NOT NULL DEFAULT 0,
	thumb_height       bigint NOT NULL DEFAULT 0,
	created_at         timestamptz NOT NULL
);

-- SweepMedia walks the oldest uploads first, and asks of a blob key
-- whether any upload still uses it (as its bytes or its thumbnail).
CREATE INDEX media_created_at ON media (created_at);
CREATE INDEX media_blob_key ON media (blob_key);
CREATE INDEX media_thumb_key ON media (thumb_key) WHERE thumb_key <> '';

-- blobs is when each blob key was last marked in use (CreateMedia,
-- TouchBlobs): the sweeper forgets a key, and has its bytes deleted, only
-- once no upload uses it and the grace period has passed.
CREATE TABLE blobs (
	key          text PRIMARY KEY,
	last_used_at timestamptz NOT NULL
);

CREATE INDEX blobs_last_used_at ON blobs (last_used_at);

ALTER TABLE messages ADD COLUMN media_id text NOT NULL DEFAULT '';

-- CanReadMedia and SweepMedia: the messages referencing an upload.
-- Queries repeat the index's condition (media_id <> ''): with the generic
-- plans the store uses (plan_cache_mode), the planner cannot otherwise
-- prove that a bound parameter satisfies it.
CREATE INDEX messages_media_id ON messages (media_id) WHERE media_id <> '';

-- 0001: the initial schema.
--
-- Times are unix milliseconds (UTC); 0 means "not set" (revoked_at,
-- spent_at, recalled_at). Seqs are INTEGER (SQLite's signed 64-bit).

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;

CREATE TABLE users (
	id            TEXT PRIMARY KEY,
	username      TEXT NOT NULL UNIQUE,
	display_name  TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
	id         TEXT PRIMARY KEY,
	user_id    TEXT NOT NULL REFERENCES users (id),
	name       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	revoked_at INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX devices_user_id ON devices (user_id);

CREATE TABLE refresh_tokens (
	hash       BLOB PRIMARY KEY,
	device_id  TEXT NOT NULL REFERENCES devices (id),
	expires_at INTEGER NOT NULL,
	spent_at   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX refresh_tokens_device_id ON refresh_tokens (device_id);

CREATE TABLE conversations (
	id              TEXT PRIMARY KEY,
	kind            INTEGER NOT NULL,
	title           TEXT NOT NULL DEFAULT '',
	owner_id        TEXT NOT NULL DEFAULT '',
	last_seq        INTEGER NOT NULL DEFAULT 0,
	created_at      INTEGER NOT NULL,
	last_message_at INTEGER NOT NULL,
	-- direct_key is "a|b" with a < b for a direct conversation, NULL for a
	-- group; UNIQUE makes the pair's conversation unique.
	direct_key      TEXT UNIQUE
) STRICT;

-- members is a rowid table on purpose: ListMembers orders a join batch by
-- insertion (the owner first).
CREATE TABLE members (
	conversation_id TEXT NOT NULL REFERENCES conversations (id),
	user_id         TEXT NOT NULL REFERENCES users (id),
	role            INTEGER NOT NULL,
	joined_seq      INTEGER NOT NULL,
	last_read_seq   INTEGER NOT NULL DEFAULT 0,
	joined_at       INTEGER NOT NULL,
	PRIMARY KEY (conversation_id, user_id)
) STRICT;

CREATE INDEX members_user_id ON members (user_id);

-- messages is clustered on (conversation_id, seq) (WITHOUT ROWID): one
-- b-tree insert less per message, and history pages and backlog catch-up
-- are contiguous range scans. There is no foreign key on sender_id: notices
-- may be written on behalf of users who are leaving, and the server checks
-- senders anyway.
CREATE TABLE messages (
	conversation_id  TEXT NOT NULL REFERENCES conversations (id),
	seq              INTEGER NOT NULL,
	id               TEXT NOT NULL UNIQUE,
	sender_id        TEXT NOT NULL,
	sender_device_id TEXT NOT NULL DEFAULT '',
	client_msg_id    TEXT NOT NULL DEFAULT '',
	kind             INTEGER NOT NULL,
	body             BLOB,
	created_at       INTEGER NOT NULL,
	recalled_at      INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (conversation_id, seq)
) STRICT, WITHOUT ROWID;

-- The idempotency key. Partial: system messages carry no client_msg_id.
CREATE UNIQUE INDEX messages_client_msg_id
	ON messages (conversation_id, sender_id, client_msg_id)
	WHERE client_msg_id <> '';

CREATE TABLE cursors (
	device_id       TEXT NOT NULL REFERENCES devices (id),
	conversation_id TEXT NOT NULL REFERENCES conversations (id),
	seq             INTEGER NOT NULL,
	PRIMARY KEY (device_id, conversation_id)
) STRICT, WITHOUT ROWID;

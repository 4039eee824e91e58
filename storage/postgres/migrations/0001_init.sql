-- 0001: the initial schema.
--
-- Times are timestamptz with millisecond precision (the store truncates);
-- NULL means "not set" (revoked_at, spent_at, recalled_at). Seqs are
-- bigint. Unqualified names: the tables land in the first schema of the
-- connection's search_path.

CREATE TABLE meta (
	key   text PRIMARY KEY,
	value text NOT NULL
);

CREATE TABLE users (
	id            text PRIMARY KEY,
	username      text NOT NULL UNIQUE,
	display_name  text NOT NULL,
	password_hash text NOT NULL,
	created_at    timestamptz NOT NULL
);

CREATE TABLE devices (
	id         text PRIMARY KEY,
	user_id    text NOT NULL REFERENCES users (id),
	name       text NOT NULL,
	created_at timestamptz NOT NULL,
	revoked_at timestamptz
);

-- ListDevices: a user's live devices.
CREATE INDEX devices_user_id ON devices (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
	hash       bytea PRIMARY KEY,
	device_id  text NOT NULL REFERENCES devices (id),
	expires_at timestamptz NOT NULL,
	spent_at   timestamptz
);

CREATE INDEX refresh_tokens_device_id ON refresh_tokens (device_id);

CREATE TABLE conversations (
	id              text PRIMARY KEY,
	kind            smallint NOT NULL,
	title           text NOT NULL DEFAULT '',
	owner_id        text NOT NULL DEFAULT '',
	last_seq        bigint NOT NULL DEFAULT 0,
	created_at      timestamptz NOT NULL,
	last_message_at timestamptz NOT NULL,
	-- direct_key is "a|b" with a < b for a direct conversation, NULL for a
	-- group; UNIQUE makes the pair's conversation unique.
	direct_key      text UNIQUE
);

-- ord orders a join batch by insertion (ListMembers: the owner first).
CREATE TABLE members (
	conversation_id text NOT NULL REFERENCES conversations (id),
	user_id         text NOT NULL REFERENCES users (id),
	role            smallint NOT NULL,
	joined_seq      bigint NOT NULL,
	last_read_seq   bigint NOT NULL DEFAULT 0,
	joined_at       timestamptz NOT NULL,
	ord             bigint GENERATED ALWAYS AS IDENTITY,
	PRIMARY KEY (conversation_id, user_id)
);

-- Backlogs and ListConversations walk a user's memberships.
CREATE INDEX members_user_id ON members (user_id);

-- History pages and backlog catch-up are range scans of the primary key.
-- There is no foreign key on sender_id: notices may be written on behalf
-- of users who are leaving, and the server checks senders anyway. There is
-- none on conversation_id either: every insert holds the conversation's
-- row lock already, and the check would cost a lookup per message.
CREATE TABLE messages (
	conversation_id  text NOT NULL,
	seq              bigint NOT NULL,
	id               text NOT NULL UNIQUE,
	sender_id        text NOT NULL,
	sender_device_id text NOT NULL DEFAULT '',
	client_msg_id    text NOT NULL DEFAULT '',
	kind             smallint NOT NULL,
	body             bytea,
	created_at       timestamptz NOT NULL,
	recalled_at      timestamptz,
	PRIMARY KEY (conversation_id, seq)
);

-- The idempotency key. Partial: system messages carry no client_msg_id.
CREATE UNIQUE INDEX messages_client_msg_id
	ON messages (conversation_id, sender_id, client_msg_id)
	WHERE client_msg_id <> '';

CREATE TABLE cursors (
	device_id       text NOT NULL REFERENCES devices (id),
	conversation_id text NOT NULL REFERENCES conversations (id),
	seq             bigint NOT NULL,
	PRIMARY KEY (device_id, conversation_id)
);

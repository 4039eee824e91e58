-- Analytics events, as in ClickHouse's events table (storage/clickhouse
-- migration 0002): what happened (a message sent, delivered, read; a
-- connection opened, closed), when, by whom and how long it took. Never
-- message content.
--
-- kind: 1 message_sent, 2 message_delivered, 3 message_read,
-- 4 connection_opened, 5 connection_closed (storage/analytics.EventKind).
-- at is whole seconds since 1970 (UTC). A batch written again after an
-- unknown outcome keeps one row per event: event_id is the key and
-- writes are INSERT OR IGNORE. latency_ms is send→deliver for
-- message_delivered, send→read for message_read, 0 otherwise.
CREATE TABLE IF NOT EXISTS events (
    event_id        BLOB PRIMARY KEY,
    kind            INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    latency_ms      INTEGER NOT NULL,
    node            TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- Every query selects one or two kinds over a time range.
CREATE INDEX IF NOT EXISTS events_kind_at ON events (kind, at);

-- The first registered user, an admin of the AdminService (the server
-- adds the configured admins). One row at most: CreateUser inserts it in
-- the user's transaction unless it exists, so of two registrations racing
-- for the empty table exactly one becomes the first user. A database
-- with users already gets its earliest.
CREATE TABLE IF NOT EXISTS first_user (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    user_id TEXT NOT NULL REFERENCES users (id)
) STRICT;

INSERT OR IGNORE INTO first_user (one, user_id)
SELECT 1, id FROM users ORDER BY created_at, id LIMIT 1;

-- 0005: the archive's hand-off (storage.ArchiveOutbox) and leases
-- (storage.LeaseStore).
--
-- archive_outbox holds one row per committed change the message archive
-- has not taken yet: a message inserted, or its body or recall state
-- changed. Triggers write the rows in the writing transaction, so every
-- path that commits a message (appends, notices, recalls, later edits)
-- enqueues it. The archiver reads the oldest rows, archives the
-- messages' current state, then deletes exactly the rows it read.
--
-- The triggers enqueue only once archive_state.enabled is set
-- (EnableArchive, which also enqueues every existing message in the same
-- write transaction): a store without an archive keeps no outbox.
-- enqueued_at is unix milliseconds. Every statement may run again (IF NOT
-- EXISTS, OR IGNORE): tests that rewind schema_migrations to replay an
-- older migration replay this one on top of its own tables.

CREATE TABLE IF NOT EXISTS archive_state (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	enabled INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO archive_state (id) VALUES (1);

CREATE TABLE IF NOT EXISTS archive_outbox (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	conversation_id TEXT NOT NULL,
	seq             INTEGER NOT NULL,
	enqueued_at     INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);

CREATE TRIGGER IF NOT EXISTS messages_archive_inserted AFTER INSERT ON messages
	WHEN (SELECT enabled FROM archive_state WHERE id = 1)
BEGIN
	INSERT INTO archive_outbox (conversation_id, seq) VALUES (NEW.conversation_id, NEW.seq);
END;

CREATE TRIGGER IF NOT EXISTS messages_archive_changed AFTER UPDATE OF body, recalled_at ON messages
	WHEN (SELECT enabled FROM archive_state WHERE id = 1)
		AND (OLD.body IS NOT NEW.body OR OLD.recalled_at IS NOT NEW.recalled_at)
BEGIN
	INSERT INTO archive_outbox (conversation_id, seq) VALUES (NEW.conversation_id, NEW.seq);
END;

-- leases: one row per lease name; expires_at is unix milliseconds.
CREATE TABLE IF NOT EXISTS leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at INTEGER NOT NULL
);

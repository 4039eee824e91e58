-- 0005: the archive's hand-off (storage.ArchiveOutbox) and leases
-- (storage.LeaseStore).
--
-- archive_outbox holds one row per committed change the message archive
-- has not taken yet: a message inserted, or its body or recall state
-- changed. Triggers write the rows, so every path that commits a message
-- (appends, notices, recalls, and later edits) enqueues it in its own
-- transaction without the Go code having to remember. The archiver reads
-- the oldest rows, archives the messages' current state, and deletes
-- exactly the rows it read: a transaction that commits late is still in
-- the table at the next read, where "ids above a checkpoint" would skip
-- it.
--
-- The triggers enqueue only once archive_state.enabled is set
-- (EnableArchive): a deployment without an archive keeps no outbox.
-- EnableArchive sets it and enqueues every existing message in one
-- transaction that first waits out in-flight writers (LOCK ... SHARE), so
-- no message commits between the two unseen.
--
-- Every statement may run again (IF NOT EXISTS, OR REPLACE): tests that
-- rewind schema_migrations to replay an older migration replay this one
-- on top of its own tables.
--
-- The functions pin the migration's search_path, so they find the tables
-- of their own schema whatever the session's search_path.

CREATE TABLE IF NOT EXISTS archive_state (
	id      boolean PRIMARY KEY DEFAULT true CHECK (id),
	enabled boolean NOT NULL DEFAULT false
);
INSERT INTO archive_state DEFAULT VALUES ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS archive_outbox (
	id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	conversation_id text NOT NULL,
	seq             bigint NOT NULL,
	enqueued_at     timestamptz NOT NULL DEFAULT now()
);

-- One statement per append batch: a statement-level trigger with the
-- batch's rows as a transition table costs one INSERT per batch, not one
-- per message.
CREATE OR REPLACE FUNCTION archive_enqueue_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
	IF (SELECT enabled FROM archive_state) THEN
		INSERT INTO archive_outbox (conversation_id, seq)
		SELECT conversation_id, seq FROM inserted_messages ORDER BY conversation_id, seq;
	END IF;
	RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER messages_archive_inserted AFTER INSERT ON messages
	REFERENCING NEW TABLE AS inserted_messages
	FOR EACH STATEMENT EXECUTE FUNCTION archive_enqueue_inserted();

CREATE OR REPLACE FUNCTION archive_enqueue_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
	IF (SELECT enabled FROM archive_state) THEN
		INSERT INTO archive_outbox (conversation_id, seq) VALUES (NEW.conversation_id, NEW.seq);
	END IF;
	RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER messages_archive_changed AFTER UPDATE ON messages
	FOR EACH ROW
	WHEN (OLD.body IS DISTINCT FROM NEW.body OR OLD.recalled_at IS DISTINCT FROM NEW.recalled_at)
	EXECUTE FUNCTION archive_enqueue_changed();

-- leases: one row per lease name. A holder takes or renews it with a
-- conditional upsert (free, expired, or already its own), on the
-- server's clock.
CREATE TABLE IF NOT EXISTS leases (
	name       text PRIMARY KEY,
	holder     text NOT NULL,
	expires_at timestamptz NOT NULL
);

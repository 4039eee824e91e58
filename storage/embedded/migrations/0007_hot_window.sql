-- 0007: the hot window (storage.HotWindow).
--
-- archived_seq is each conversation's boundary: messages at or below it
-- are read from the archive, and their rows here are gone (but for media
-- messages, kept for access checks).
--
-- TrimArchived asks, per message it would pass, whether an outbox entry
-- still waits for it: the index answers that without a scan of the
-- outbox, which grows while the archive is down.
ALTER TABLE conversations ADD COLUMN archived_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS archive_outbox_message ON archive_outbox (conversation_id, seq);

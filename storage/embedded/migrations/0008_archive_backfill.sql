-- 0008: EnableArchive no longer enqueues every existing message in its
-- own transaction (which held the write lock for as long as the insert
-- took). It only switches the triggers on; the messages from before are
-- enqueued a page at a time afterwards (BackfillOutbox), in primary-key
-- order from a cursor kept here.
--
-- backfill_done defaults to 1: a store whose archive was enabled before
-- this migration had its backfill done by the old EnableArchive.
ALTER TABLE archive_state ADD COLUMN backfill_done INTEGER NOT NULL DEFAULT 1;
ALTER TABLE archive_state ADD COLUMN backfill_conversation TEXT NOT NULL DEFAULT '';
ALTER TABLE archive_state ADD COLUMN backfill_seq INTEGER NOT NULL DEFAULT 0;

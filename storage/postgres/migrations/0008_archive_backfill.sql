-- 0008: EnableArchive no longer enqueues every existing message in its
-- own transaction (which held messages locked for as long as the insert
-- took: minutes on a large store). It only switches the triggers on; the
-- messages from before are enqueued a page at a time afterwards
-- (BackfillOutbox), in primary-key order from a cursor kept here.
--
-- backfill_done defaults to true: a store whose archive was enabled
-- before this migration had its backfill done by the old EnableArchive.
ALTER TABLE archive_state ADD COLUMN IF NOT EXISTS backfill_done boolean NOT NULL DEFAULT true;
ALTER TABLE archive_state ADD COLUMN IF NOT EXISTS backfill_conversation text NOT NULL DEFAULT '';
ALTER TABLE archive_state ADD COLUMN IF NOT EXISTS backfill_seq bigint NOT NULL DEFAULT 0;

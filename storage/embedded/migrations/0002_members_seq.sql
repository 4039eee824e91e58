-- 0002: conversations.members_seq, the seq of the conversation's newest
-- membership change (group created, members added, a member removed or
-- left), which every committed message reports as storage.Message
-- MembersSeq. The membership writes set it to their notice's seq in the
-- write transaction that takes the seq, and appends read it in theirs.
--
-- Existing rows start at 0, with no backfill. An exact one is not
-- possible here: membership notices and recall notices are both system
-- messages whose bodies the store does not interpret, so "the newest
-- membership notice" cannot be told from "the newest system message"
-- (which would also cost a scan of every group's history). 0 is safe
-- because the value is only compared, as a version, with the one a member
-- list was cached under: a list can be cached only after this migration
-- ran (Open applies it before serving), and every membership change from
-- now on sets members_seq to its notice's seq, which is above every
-- earlier seq and so above 0. A list cached under 0 is therefore stale
-- only for messages committed after a later change, and those carry that
-- change's seq, not 0.

ALTER TABLE conversations ADD COLUMN members_seq INTEGER NOT NULL DEFAULT 0;

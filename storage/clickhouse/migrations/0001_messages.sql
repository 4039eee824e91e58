-- The message archive: one row per state of a message (committed,
-- edited, recalled), collapsed by ReplacingMergeTree to the row with the
-- highest version per (conversation_id, seq). Readers use FINAL.
--
-- Rows of one message must land in one partition for the collapse to
-- happen, so created_at never changes between a message's states.
-- DateTime has whole seconds (DateTime64 does not exist in 18.16): each
-- *_nsec column holds the sub-second part, so the archive gives back the
-- exact timestamps the primary store has. A zero DateTime with a zero
-- flag means "never".
--
-- Statements here are run one by one (ClickHouse has no transactions)
-- and may run again after a crash: each must be idempotent.
CREATE TABLE IF NOT EXISTS messages (
    conversation_id  String,
    seq              UInt64,
    message_id       String,
    sender_id        String,
    sender_device_id String,
    client_msg_id    String,
    kind             UInt8,
    body             String,
    media_id         String,
    created_at       DateTime,
    created_at_nsec  UInt32,
    edited           UInt8,
    edited_at        DateTime,
    edited_at_nsec   UInt32,
    recalled         UInt8,
    recalled_at      DateTime,
    recalled_at_nsec UInt32,
    version          UInt64,
    archived_at      DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(created_at)
ORDER BY (conversation_id, seq);

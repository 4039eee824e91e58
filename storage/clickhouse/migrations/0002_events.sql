-- Analytics events: what happened (a message sent, delivered, read; a
-- connection opened, closed), when, by whom and how long it took. Never
-- message content.
--
-- Each event carries a random event_id, and the table collapses rows with
-- the same sorting key: a batch the writer sends again after an insert
-- whose outcome it could not know (a timeout after the server had
-- written it) leaves one row per event for readers that use FINAL, which
-- the analytics queries do (or count distinct users, which needs no
-- FINAL). kind and at are the same in every copy of an event, so copies
-- share a partition and a key.
--
-- at is whole seconds in UTC (DateTime64 does not exist in 18.16; the
-- queries bucket by minute at the finest, and latencies are measured by
-- the server and stored in latency_ms, so no sub-second part is kept).
-- The 'UTC' time zone makes toStartOfDay and friends bucket in UTC
-- whatever the server's own time zone is.
--
-- seq is the message's position in its conversation (0 for connection
-- events): with conversation_id it joins a send to its deliveries and
-- reads. latency_ms is send→deliver for message_delivered, send→read for
-- message_read, 0 otherwise.
CREATE TABLE IF NOT EXISTS events (
    event_id        UUID,
    kind            Enum8('message_sent' = 1, 'message_delivered' = 2, 'message_read' = 3,
                          'connection_opened' = 4, 'connection_closed' = 5),
    at              DateTime('UTC'),
    user_id         String,
    device_id       String,
    conversation_id String,
    seq             UInt64,
    latency_ms      UInt32,
    node            String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (kind, at, event_id);

-- 0004: message search (storage.SearchStore). message_search holds each
-- message's SearchText (a text body, or an image or file caption) and
-- its words as a tsvector under a GIN index, written in the append's
-- transaction; a recall deletes the row in the recall's transaction.
--
-- The lexemes are not computed by to_tsvector: even the language-neutral
-- 'simple' configuration keeps diacritics ("crème" would not find
-- "creme") and its parser keeps "example.com" or "foo-bar" whole, so
-- "example" would not find them, unlike on SQLite and unlike the
-- highlights. The store writes array_to_tsvector of the words
-- storage/textsearch finds (split on everything but letters and digits,
-- lowercased, without diacritics: 'simple' with unaccent, no stemming, no
-- stop words, which suits multilingual chats), and queries with a tsquery
-- of the same words.
--
-- created_at is kept here so that the search order and the time range
-- are read from the index without visiting messages first.
--
-- Existing databases: messages committed before this migration have no
-- row here and are not found (their bodies are encoded by the server, so
-- the store cannot extract their text). The new table starts empty, so
-- the migration is quick on any database.

CREATE TABLE message_search (
	conversation_id text NOT NULL,
	seq             bigint NOT NULL,
	created_at      timestamptz NOT NULL,
	text            text NOT NULL,
	words           tsvector NOT NULL,
	PRIMARY KEY (conversation_id, seq),
	-- Whatever removes messages (a retention job) removes their words.
	FOREIGN KEY (conversation_id, seq) REFERENCES messages (conversation_id, seq) ON DELETE CASCADE
);

CREATE INDEX message_search_words ON message_search USING gin (words);

-- The search order. For a common word the planner walks this newest
-- first, tests each row against the words and stops after a page, instead
-- of sorting every match the GIN index yields (over 100,000 messages, a
-- word in most of them: 245 ms a page without it).
CREATE INDEX message_search_order ON message_search (created_at DESC, conversation_id DESC, seq DESC);

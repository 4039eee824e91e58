-- 0004: message search (storage.SearchStore). message_search is an FTS5
-- index of each message's SearchText (a text body, or an image or file
-- caption), written in the append's transaction; messages.search_rowid
-- points at a message's row there (0: none), so a recall deletes it in
-- the recall's transaction.
--
-- The tokenizer splits on everything but letters and digits and folds
-- case and diacritics (remove_diacritics 2 also folds the letters that
-- version 1 missed), which is what storage/textsearch does for queries
-- and highlights. conversation_id and seq are stored, not indexed: they
-- lead from a match to its message.
--
-- secure-delete makes a delete remove the row's words from the index
-- itself at once, not merely mark them deleted until segments merge: a
-- recalled message's words must not stay in the file.
--
-- Existing databases: messages committed before this migration have no
-- row here and are not found (their bodies are encoded by the server, so
-- the store cannot extract their text); the ADD COLUMN rewrites no rows.

CREATE VIRTUAL TABLE message_search USING fts5 (
	text,
	conversation_id UNINDEXED,
	seq UNINDEXED,
	tokenize = 'unicode61 remove_diacritics 2'
);

INSERT INTO message_search (message_search, rank) VALUES ('secure-delete', 1);

ALTER TABLE messages ADD COLUMN search_rowid INTEGER NOT NULL DEFAULT 0;

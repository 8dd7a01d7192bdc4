-- Full-text search over message bodies, room names and topics. The rowid is the event NID.
-- SQLite uses FTS5; 0006_search.postgres.sql uses a tsvector with a GIN index.
CREATE VIRTUAL TABLE event_search USING fts5(
    body,
    search_key UNINDEXED,
    room_nid UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2'
);

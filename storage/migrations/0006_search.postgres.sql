-- Full-text search over message bodies, room names and topics.
-- PostgreSQL uses a tsvector with a GIN index; 0006_search.sqlite.sql uses FTS5.
CREATE TABLE event_search (
    event_nid  BIGINT PRIMARY KEY,
    room_nid   BIGINT NOT NULL,
    search_key TEXT NOT NULL,
    body       TEXT NOT NULL,
    vector     TSVECTOR NOT NULL
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
CREATE INDEX event_search_room ON event_search (room_nid, event_nid);

-- Relations between events (m.relates_to): threads, edits, annotations, references.
CREATE TABLE event_relations (
    event_nid       BIGINT PRIMARY KEY,
    room_nid        BIGINT NOT NULL,
    relates_to      TEXT NOT NULL,
    rel_type        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    sender          TEXT NOT NULL,
    origin_ts       BIGINT NOT NULL,
    event_id        TEXT NOT NULL,
    aggregation_key TEXT NOT NULL DEFAULT ''
);
CREATE INDEX event_relations_parent ON event_relations (relates_to, rel_type, event_nid);
CREATE INDEX event_relations_threads ON event_relations (room_nid, rel_type, event_nid);

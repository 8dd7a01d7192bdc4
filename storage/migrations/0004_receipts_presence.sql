-- Read receipts and presence, each with its sync stream. Typing notifications are in memory only (internal/typing).

-- receipts holds the latest receipt per user, room, receipt type and thread ('' for an
-- unthreaded receipt). event_nid keeps a receipt from moving backwards.
CREATE TABLE receipts (
    room_nid     BIGINT NOT NULL,
    user_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    thread_id    TEXT NOT NULL DEFAULT '',
    event_id     TEXT NOT NULL,
    event_nid    BIGINT NOT NULL,
    ts           BIGINT NOT NULL,
    stream_pos   BIGINT NOT NULL,
    PRIMARY KEY (room_nid, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_stream ON receipts (room_nid, stream_pos);
INSERT INTO streams (name, pos) VALUES ('receipts', 0) ON CONFLICT (name) DO NOTHING;

-- presence holds each user's presence; status_msg '' is none, last_active_ts 0 never active.
CREATE TABLE presence (
    user_id        TEXT PRIMARY KEY,
    presence       TEXT NOT NULL,
    status_msg     TEXT NOT NULL DEFAULT '',
    last_active_ts BIGINT NOT NULL,
    stream_pos     BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_pos);
INSERT INTO streams (name, pos) VALUES ('presence', 0) ON CONFLICT (name) DO NOTHING;

-- Sliding sync (MSC4186) connections, kept so that a client reconnecting with its pos after
-- a restart gets an incremental answer instead of M_UNKNOWN_POS. Only the newest state of
-- each connection is kept: its pos, its header (stream positions, list counts, extension
-- configs; JSON) and, one row per room, what the connection has of the room (JSON). The
-- rows are written in batches some time after the responses, only the rooms that changed.
CREATE TABLE sliding_sync_connections (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    conn_id    TEXT NOT NULL,
    pos        BIGINT NOT NULL,
    header     TEXT NOT NULL,
    updated_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, conn_id)
);

CREATE TABLE sliding_sync_rooms (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id   TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    sent      TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, conn_id, room_id)
);

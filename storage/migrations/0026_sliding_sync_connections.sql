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

-- Thread subscriptions (MSC4306). A row is a user's subscription to a thread (subscribed 1,
-- automatic 1 when a client made it for a mention) or the trace of an unsubscription
-- (subscribed 0, unsubscribed_at the newest event stream position at that time, which
-- automatic subscriptions caused by older events may not override). stream_pos comes from
-- the account_data stream, so that the changes reach /sync long-polls and sliding sync's
-- thread subscriptions extension without a stream of their own.
CREATE TABLE thread_subscriptions (
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    thread_root     TEXT NOT NULL,
    subscribed      BIGINT NOT NULL,
    automatic       BIGINT NOT NULL,
    unsubscribed_at BIGINT NOT NULL DEFAULT 0,
    stream_pos      BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_root)
);
CREATE INDEX thread_subscriptions_stream ON thread_subscriptions (user_id, stream_pos);

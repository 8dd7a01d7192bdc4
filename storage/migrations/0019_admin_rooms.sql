-- blocked_rooms lists the rooms a server admin blocked (the admin API's block and delete room):
-- local users may neither join them nor be invited to them. A room may be blocked before this
-- server knows it, and stays blocked after its data is purged.
CREATE TABLE blocked_rooms (
    room_id    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    blocked_ts BIGINT NOT NULL
);

-- room_deletes records the admin API's room deletions (DELETE /_synapse/admin/v2/rooms/...),
-- so that their status can be asked after a restart. status is scheduled, active, complete or
-- failed; result is the shutdown_room object, JSON.
CREATE TABLE room_deletes (
    delete_id  TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    status     TEXT NOT NULL,
    error      TEXT NOT NULL DEFAULT '',
    result     TEXT NOT NULL DEFAULT '',
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
);
CREATE INDEX room_deletes_room ON room_deletes (room_id, created_ts);

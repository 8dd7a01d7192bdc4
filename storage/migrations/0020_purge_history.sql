-- purge_history has one row per purge of a room's history (the admin API's purge_history and
-- the message retention job), so that GET purge_history_status answers after a restart and
-- a purge cut short by a restart resumes: the purge point is kept with it.
-- status is 'active', 'complete' or 'failed' (error says why). A purge deletes the room's
-- events with depth below before_depth and NID at most up_to_nid.
CREATE TABLE purge_history (
    purge_id     TEXT PRIMARY KEY,
    room_id      TEXT NOT NULL,
    room_nid     BIGINT NOT NULL,
    status       TEXT NOT NULL,
    error        TEXT NOT NULL DEFAULT '',
    before_depth BIGINT NOT NULL,
    up_to_nid    BIGINT NOT NULL,
    delete_local BOOLEAN NOT NULL,
    created_ts   BIGINT NOT NULL,
    updated_ts   BIGINT NOT NULL
);
-- One active purge per room.
CREATE UNIQUE INDEX purge_history_active ON purge_history (room_id) WHERE status = 'active';

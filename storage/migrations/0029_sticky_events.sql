-- Sticky events (MSC4354): the room events that /sync delivers in the rooms' sticky section
-- while they are sticky, regardless of the timeline limit. event_nid is also the event's
-- stream position; expires_ts (Unix ms) is min(origin_server_ts, received) + the duration
-- capped at one hour, after which the event is an ordinary event again. Rows past their
-- expiry are useless and are deleted as new sticky events of the room arrive.
CREATE TABLE sticky_events (
    event_nid  BIGINT NOT NULL PRIMARY KEY,
    room_nid   BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX sticky_events_room ON sticky_events (room_nid, event_nid);

-- sticky_ms is the sticky duration of a delayed message event that is sent sticky (MSC4354
-- with MSC4140: a MatrixRTC client's leave event); NULL for one that is not.
ALTER TABLE delayed_events ADD COLUMN sticky_ms BIGINT;

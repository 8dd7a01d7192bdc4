-- The last membership event of each user of a room deleted with purge (the admin API's
-- delete room): the room's events are gone, and an incremental /sync from before the
-- deletion still shows the room under "leave" with this event, so that clients drop it
-- instead of keeping a room they can no longer leave. stream_pos is the event's position.
CREATE TABLE purged_room_leaves (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    event_json TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX purged_room_leaves_stream ON purged_room_leaves (user_id, stream_pos);

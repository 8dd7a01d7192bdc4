-- Rooms this server joined with partial state (send_join v2 with omit_members, MSC3706): the
-- state before the join lacks most membership events until a background resync fetches the
-- full state from a resident server (roomserver/resync.go). A row exists while the room is
-- partial and is deleted when the resync completes; a start-up resumes the resync of every
-- row. servers_in_room is the send_join answer's list (a JSON array), joined_via the server
-- that answered; attempts and last_error record failed resync attempts.
CREATE TABLE partial_state_rooms (
    room_nid        BIGINT PRIMARY KEY,
    room_id         TEXT NOT NULL,
    join_event_id   TEXT NOT NULL,
    joined_via      TEXT NOT NULL,
    servers_in_room TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT ''
);

-- events.room_state_nid is the room's current state (a state snapshot) once the event was
-- committed. With federation the current state is the resolution of the forward
-- extremities' states, which is not always the state after the newest event; /sync's
-- state_after (use_state_after) answers from it. 0 for events of the stream stored before
-- this column, whose rooms had linear histories (the state after the event is the room's
-- state then), and for events outside the stream.
ALTER TABLE events ADD COLUMN room_state_nid BIGINT NOT NULL DEFAULT 0;

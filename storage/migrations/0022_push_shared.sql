-- Shared notifications: a message in a big room notifies most of its members with the same
-- result (their push rules are the defaults and the event names none of them), so that
-- result is stored once per event instead of once per member.
--
-- event_push_shared has a row per event whose default-rules result notifies: it is the
-- notification of every local user whose push_spans span covers the event, except the
-- event's sender and the users of event_push_apart, whose own result (if it notifies) is an
-- event_push_actions row like that of every user with push rules of their own.
CREATE TABLE event_push_shared (
    room_nid   BIGINT NOT NULL,
    event_nid  BIGINT NOT NULL,
    sender     TEXT NOT NULL,
    thread_id  TEXT NOT NULL DEFAULT 'main',
    highlight  BOOLEAN NOT NULL DEFAULT FALSE,
    actions    TEXT NOT NULL,
    ts         BIGINT NOT NULL,
    PRIMARY KEY (room_nid, event_nid)
);
-- The purge walks the rows in event order.
CREATE INDEX event_push_shared_event ON event_push_shared (event_nid);

-- event_push_apart lists the users a shared row would cover who were evaluated apart for its
-- event (those the event mentions or whose membership it changes).
CREATE TABLE event_push_apart (
    user_id    TEXT NOT NULL,
    room_nid   BIGINT NOT NULL,
    event_nid  BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_nid, event_nid)
);

-- push_spans are the stretches of a room's events (event NIDs from_nid to to_nid, both
-- included; to_nid is the largest BIGINT while the span is open) during which a local user
-- was joined to it and on the default push rules: the events whose shared rows are theirs.
CREATE TABLE push_spans (
    user_id    TEXT NOT NULL,
    room_nid   BIGINT NOT NULL,
    from_nid   BIGINT NOT NULL,
    to_nid     BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_nid, from_nid)
);
CREATE INDEX push_spans_room ON push_spans (room_nid, to_nid);

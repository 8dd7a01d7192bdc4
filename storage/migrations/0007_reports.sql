-- Reports of rooms, events and users, for the server's administrators.
CREATE TABLE reports (
    report_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    reporter    TEXT NOT NULL,
    room_id     TEXT NOT NULL DEFAULT '',
    event_id    TEXT NOT NULL DEFAULT '',
    user_id     TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    score       BIGINT,
    created_ts  BIGINT NOT NULL
);

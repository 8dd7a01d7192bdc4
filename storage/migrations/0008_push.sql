-- Push notifications: the notifications push rules gave each user (event_push_actions) and
-- the users' pushers.

-- event_push_actions has a row per event and local user whose push rules said "notify",
-- written in the transaction that commits the event. thread_id is 'main' for the main
-- timeline, else the thread root's event ID. actions is the matching rule's actions (JSON).
CREATE TABLE event_push_actions (
    user_id    TEXT NOT NULL,
    room_nid   BIGINT NOT NULL,
    event_nid  BIGINT NOT NULL,
    thread_id  TEXT NOT NULL DEFAULT 'main',
    highlight  BOOLEAN NOT NULL DEFAULT FALSE,
    actions    TEXT NOT NULL,
    ts         BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_nid, event_nid)
);
-- GET /notifications pages through a user's rows newest first.
CREATE INDEX event_push_actions_user ON event_push_actions (user_id, event_nid);

-- The roomserver follows changed push rules (account data m.push_rules) by stream position.
CREATE INDEX account_data_type_stream ON account_data (data_type, stream_pos);

-- pushers are the users' HTTP pushers (POST /pushers/set). data is the pusher's data (JSON).
CREATE TABLE pushers (
    user_id             TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT NOT NULL DEFAULT '',
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,
    pushkey_ts          BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_key ON pushers (app_id, pushkey);

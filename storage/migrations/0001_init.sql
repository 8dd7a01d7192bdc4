-- Lattice schema. Written once for both databases (see migrate in db.go).
CREATE TABLE accounts (
    user_id       TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated   BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE profiles (
    user_id     TEXT PRIMARY KEY,
    displayname TEXT NOT NULL DEFAULT '',
    avatar_url  TEXT NOT NULL DEFAULT ''
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL DEFAULT '',
    created_ts   BIGINT NOT NULL,
    last_seen_ts BIGINT NOT NULL,
    last_seen_ip TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, device_id)
);

-- A client's transaction ID is scoped to its device and the room it sends into.
CREATE TABLE txn_ids (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    room_nid   BIGINT NOT NULL,
    txn_id     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, room_nid, txn_id)
);

CREATE TABLE filters (
    filter_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL,
    filter_json TEXT NOT NULL
);

CREATE TABLE streams (
    name TEXT PRIMARY KEY,
    pos  BIGINT NOT NULL
);
INSERT INTO streams (name, pos) VALUES ('account_data', 0);

CREATE TABLE account_data (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL DEFAULT '',
    data_type  TEXT NOT NULL,
    content    TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_pos);

CREATE TABLE rooms (
    room_nid           INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id            TEXT NOT NULL UNIQUE,
    room_version       TEXT NOT NULL,
    visibility         TEXT NOT NULL DEFAULT 'private',
    state_snapshot_nid BIGINT NOT NULL DEFAULT 0,
    max_depth          BIGINT NOT NULL DEFAULT 0,
    created_ts         BIGINT NOT NULL
);

CREATE TABLE room_aliases (
    alias   TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

CREATE TABLE state_keys (
    state_key_nid INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type    TEXT NOT NULL,
    state_key     TEXT NOT NULL,
    UNIQUE (event_type, state_key)
);

-- event_nid doubles as the position of the event in the room event stream.
CREATE TABLE events (
    event_nid        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT NOT NULL UNIQUE,
    room_nid         BIGINT NOT NULL,
    event_type       TEXT NOT NULL,
    state_key_nid    BIGINT NOT NULL DEFAULT 0,
    sender           TEXT NOT NULL,
    depth            BIGINT NOT NULL,
    origin_ts        BIGINT NOT NULL,
    state_before_nid BIGINT NOT NULL,
    replaces_nid     BIGINT NOT NULL DEFAULT 0,
    rejected         BOOLEAN NOT NULL DEFAULT FALSE,
    redacted_by      TEXT NOT NULL DEFAULT '',
    txn_device       TEXT NOT NULL DEFAULT '',
    txn_id           TEXT NOT NULL DEFAULT '',
    event_json       TEXT NOT NULL
);
CREATE INDEX events_room_stream ON events (room_nid, event_nid);
CREATE INDEX events_room_topo ON events (room_nid, depth, event_nid);

CREATE TABLE forward_extremities (
    room_nid  BIGINT NOT NULL,
    event_nid BIGINT NOT NULL,
    PRIMARY KEY (room_nid, event_nid)
);

-- A snapshot is its parent plus the entries listed for it; event_nid 0 removes a key.
CREATE TABLE state_snapshots (
    snapshot_nid INTEGER PRIMARY KEY AUTOINCREMENT,
    room_nid     BIGINT NOT NULL,
    parent_nid   BIGINT NOT NULL DEFAULT 0,
    chain_len    INTEGER NOT NULL
);

CREATE TABLE state_snapshot_entries (
    snapshot_nid  BIGINT NOT NULL,
    state_key_nid BIGINT NOT NULL,
    event_nid     BIGINT NOT NULL,
    PRIMARY KEY (snapshot_nid, state_key_nid)
);

CREATE TABLE current_state (
    room_nid      BIGINT NOT NULL,
    state_key_nid BIGINT NOT NULL,
    event_nid     BIGINT NOT NULL,
    PRIMARY KEY (room_nid, state_key_nid)
);

-- Current membership of every user in every room they touched; event_nid is the stream
-- position at which it last changed.
CREATE TABLE memberships (
    room_nid   BIGINT NOT NULL,
    user_id    TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_nid  BIGINT NOT NULL,
    forgotten  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (room_nid, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id, membership);
CREATE INDEX memberships_user_stream ON memberships (user_id, event_nid);

-- End-to-end encryption: device and cross-signing keys, one-time and fallback keys, the
-- device list stream, to-device messages and server-side key backups.
INSERT INTO streams (name, pos) VALUES ('to_device', 0) ON CONFLICT (name) DO NOTHING;
INSERT INTO streams (name, pos) VALUES ('device_lists', 0) ON CONFLICT (name) DO NOTHING;
-- Not a sync stream: the order in which one-time keys were uploaded (claimed oldest first).
INSERT INTO streams (name, pos) VALUES ('one_time_key_uploads', 0) ON CONFLICT (name) DO NOTHING;

-- The identity keys of a device, as uploaded with /keys/upload.
CREATE TABLE device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Unclaimed one-time keys; a claim deletes its row. upload_seq orders them by upload.
CREATE TABLE one_time_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    upload_seq BIGINT NOT NULL,
    key_json   TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
CREATE INDEX one_time_keys_claim ON one_time_keys (user_id, device_id, algorithm, upload_seq);

-- At most one fallback key per device and algorithm; used once it was handed out by a claim.
CREATE TABLE fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: key_type is master, self_signing or user_signing.
CREATE TABLE cross_signing_keys (
    user_id  TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded with /keys/signatures/upload. The target is a device (target_key_id is
-- its device ID) or a cross-signing key (target_key_id is its public key).
CREATE TABLE key_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id  TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The device_lists stream position at which each user's devices or keys last changed.
CREATE TABLE device_list_changes (
    user_id    TEXT PRIMARY KEY,
    stream_pos BIGINT NOT NULL
);
CREATE INDEX device_list_changes_stream ON device_list_changes (stream_pos);
-- Membership changes in a user's rooms since a sync token: who started or stopped sharing a
-- room (storage.DeviceListChanges), without reading every member of a large room.
CREATE INDEX memberships_room_stream ON memberships (room_nid, event_nid);

-- Pending to-device messages, deleted once the target device acknowledges them with a
-- since-token at or past stream_pos. A device has at most one message per position.
CREATE TABLE to_device_messages (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    sender     TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_pos)
);

-- Transaction IDs of /sendToDevice, so that a retried request is not delivered twice.
CREATE TABLE to_device_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Server-side key backup versions; a deleted version keeps its row so that its number is
-- never reused. etag changes whenever the keys of the version change.
CREATE TABLE key_backup_versions (
    user_id   TEXT NOT NULL,
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag      BIGINT NOT NULL DEFAULT 0,
    deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE key_backup_sessions (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);

-- What server operators manage through the admin API: registration tokens, server notices
-- and the moderation state of media.

-- registration_tokens are the tokens of the m.login.registration_token stage that admins
-- create (registration.tokens in the config are the static ones). pending counts
-- registrations that passed the stage and are creating their account, completed those that
-- did; a token admits a registration only while pending + completed < uses_allowed (NULL:
-- unlimited) and now <= expiry_time (NULL: never expires).
CREATE TABLE registration_tokens (
    token        TEXT NOT NULL PRIMARY KEY,
    uses_allowed BIGINT,
    pending      BIGINT NOT NULL DEFAULT 0,
    completed    BIGINT NOT NULL DEFAULT 0,
    expiry_time  BIGINT
);

-- server_notice_rooms is the room in which each user receives server notices.
CREATE TABLE server_notice_rooms (
    user_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL
);

-- server_notice_txns makes PUT /send_server_notice/{txnId} idempotent per admin.
CREATE TABLE server_notice_txns (
    admin_id TEXT NOT NULL,
    txn_id   TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (admin_id, txn_id)
);

-- Quarantined media is refused on download; media safe from quarantine is never quarantined.
-- last_access_ts is when the media was last served (to a few minutes; NULL: never), which
-- deletion by date and the purge of the remote cache go by.
ALTER TABLE media ADD COLUMN quarantined_by TEXT NOT NULL DEFAULT '';
ALTER TABLE media ADD COLUMN safe_from_quarantine BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE media ADD COLUMN last_access_ts BIGINT;
CREATE INDEX media_by_user ON media (user_id, created_ts);

-- What the admin API still lacked: third-party and external IDs of accounts, the user agent
-- a device was last seen with, and a cache generation for the notification counts.

-- user_threepids are an account's third-party identifiers (e-mail addresses, phone numbers)
-- as an admin set them with PUT /_synapse/admin/v2/users/{user}: one account per address.
-- E-mail addresses are stored canonical (trimmed, lower case), as they are looked up.
CREATE TABLE user_threepids (
    medium       TEXT NOT NULL,
    address      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    validated_at BIGINT NOT NULL,
    added_at     BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);

-- user_external_ids map an account to its identity at a single sign-on provider.
CREATE TABLE user_external_ids (
    auth_provider TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    PRIMARY KEY (auth_provider, external_id)
);
CREATE INDEX user_external_ids_user ON user_external_ids (user_id);

-- The User-Agent of the latest request seen from a device (with last_seen_ts and
-- last_seen_ip, written at most once a minute per device).
ALTER TABLE devices ADD COLUMN last_seen_user_agent TEXT NOT NULL DEFAULT '';

-- push_actions is bumped by every transaction that deletes notifications a user may not have
-- read (a history purge, retention): /sync's cached unread counts are then counted afresh.
INSERT INTO cache_generations (name, generation) VALUES ('push_actions', 0);

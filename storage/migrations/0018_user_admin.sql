-- What the admin API keeps about an account beyond its password and admin flag:
-- locked (every authenticated request but logout is refused with M_USER_LOCKED),
-- suspended (the account may read but not act: M_USER_SUSPENDED), shadow_banned (its writes
-- seem to succeed but are dropped), erased (deactivated with its profile wiped) and
-- user_type (NULL for a normal user; "bot", "support").
ALTER TABLE accounts ADD COLUMN locked BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE accounts ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE accounts ADD COLUMN shadow_banned BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE accounts ADD COLUMN erased BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE accounts ADD COLUMN user_type TEXT;

-- A per-user override of the message-send rate limit; 0 and 0 mean no limit.
CREATE TABLE ratelimit_overrides (
    user_id             TEXT PRIMARY KEY,
    messages_per_second BIGINT NOT NULL,
    burst_count         BIGINT NOT NULL
);

-- Access tokens an admin obtained to act as a user (POST /_synapse/admin/v1/users/{u}/login).
-- They belong to no device the user can see; valid_until_ms 0 means no expiry.
CREATE TABLE puppet_tokens (
    token_hash     TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    device_id      TEXT NOT NULL,
    admin_user_id  TEXT NOT NULL,
    valid_until_ms BIGINT NOT NULL,
    created_ts     BIGINT NOT NULL
);
CREATE INDEX puppet_tokens_admin ON puppet_tokens (admin_user_id);

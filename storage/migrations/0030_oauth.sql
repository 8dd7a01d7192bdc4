-- OAuth 2.0 API and refresh tokens.

-- A device's access token may expire (token_expires_ts, Unix ms; 0: never) when the session
-- has a refresh token. refresh_token_hash is the SHA-256 of the current refresh token;
-- prev_refresh_token_hash the one it replaced, which stays usable until the new access or
-- refresh token is used (Client-Server API, "Refreshing access tokens"). refresh_expires_ts
-- is when the refresh token lapses (0: never). superseded_refresh_token_hash is the latest
-- refresh token that stopped being usable by rotation: presented again, it betrays a stolen
-- token and ends the session (OAuth 2.0 API, "Refresh token grant"). oauth_client_id is the OAuth client that
-- holds the session ('' for /login and /register).
ALTER TABLE devices ADD COLUMN token_expires_ts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN refresh_token_hash TEXT;
ALTER TABLE devices ADD COLUMN prev_refresh_token_hash TEXT;
ALTER TABLE devices ADD COLUMN superseded_refresh_token_hash TEXT;
ALTER TABLE devices ADD COLUMN refresh_expires_ts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN oauth_client_id TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX devices_refresh_token ON devices (refresh_token_hash);
CREATE UNIQUE INDEX devices_prev_refresh_token ON devices (prev_refresh_token_hash);
CREATE INDEX devices_superseded_refresh_token ON devices (superseded_refresh_token_hash);

-- oauth_clients are the clients registered with dynamic client registration (RFC 7591):
-- metadata is the registered client metadata as JSON.
CREATE TABLE oauth_clients (
    client_id  TEXT NOT NULL PRIMARY KEY,
    metadata   TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);

-- oauth_grants are pending grants: authorization codes (kind 'code', grant_hash the SHA-256
-- of the code) and device authorization requests (kind 'device', grant_hash the SHA-256 of
-- the device code, user_code what the user types). status is pending, approved or denied;
-- user_id is who approved. last_poll_ts is the client's latest poll of a device grant. nonce
-- is the OpenID Connect nonce of the authorization request, for the ID token.
CREATE TABLE oauth_grants (
    grant_hash     TEXT NOT NULL PRIMARY KEY,
    kind           TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    user_code      TEXT,
    redirect_uri   TEXT NOT NULL DEFAULT '',
    code_challenge TEXT NOT NULL DEFAULT '',
    scope          TEXT NOT NULL,
    user_id        TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL,
    expires_ts     BIGINT NOT NULL,
    interval_ms    BIGINT NOT NULL DEFAULT 0,
    last_poll_ts   BIGINT NOT NULL DEFAULT 0,
    nonce          TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX oauth_grants_user_code ON oauth_grants (user_code);
CREATE INDEX oauth_grants_expiry ON oauth_grants (expires_ts);

-- cross_signing_reset_ts is until when (Unix ms) the user allowed, on the account page, the
-- replacement of their cross-signing keys by a session of the OAuth 2.0 API (the m.oauth
-- stage of POST /keys/device_signing/upload); 0: not allowed.
ALTER TABLE accounts ADD COLUMN cross_signing_reset_ts BIGINT NOT NULL DEFAULT 0;

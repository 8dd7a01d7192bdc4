-- OAuth 2.0 server review fixes.

-- refresh_salt is the random value the device's current tokens were derived from, together
-- with the refresh token they replaced (prev_refresh_token_hash): repeating a refresh with
-- that token gives the same tokens again, so that concurrent or repeated refreshes all get
-- working tokens.
ALTER TABLE devices ADD COLUMN refresh_salt TEXT;

-- oauth_scope is the scope granted to the OAuth session, in the client's spelling (stable or
-- unstable scope names), repeated in the answers of its refreshes ('' for other sessions).
ALTER TABLE devices ADD COLUMN oauth_scope TEXT NOT NULL DEFAULT '';

-- A used authorization code is kept (used_device_id is the device its session got) until it
-- expires, so that presenting it again ends that session (RFC 6749 section 4.1.2).
ALTER TABLE oauth_grants ADD COLUMN used_device_id TEXT;

-- web_sessions_ts: browser sessions of the account's pages signed in before it (Unix ms) are
-- no longer valid: set by a password change and by logging out of all devices.
ALTER TABLE accounts ADD COLUMN web_sessions_ts BIGINT NOT NULL DEFAULT 0;

-- For finding the registered clients that no session uses.
CREATE INDEX devices_oauth_client ON devices (oauth_client_id);
CREATE INDEX oauth_grants_client ON oauth_grants (client_id);

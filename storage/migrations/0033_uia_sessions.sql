-- uia_sessions are the user-interactive authentication sessions this server issued to a
-- signed-in user, each bound to the request that started it (method and path) and described
-- in words for the pages that ask the user to approve it (the m.login.sso fallback). A
-- session presented with another request, by another user, or never issued is refused. Rows
-- are deleted when the request succeeds, and expired ones when new sessions are issued.
CREATE TABLE uia_sessions (
    session_id  TEXT NOT NULL PRIMARY KEY,
    user_id     TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    description TEXT NOT NULL,
    expires_ts  BIGINT NOT NULL
);
CREATE INDEX uia_sessions_expiry ON uia_sessions (expires_ts);
CREATE INDEX uia_sessions_user ON uia_sessions (user_id, expires_ts);

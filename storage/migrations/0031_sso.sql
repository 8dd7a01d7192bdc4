-- login_tokens are the single-use, short-lived tokens of the m.login.token login type: made
-- at the end of a single sign-on (the loginToken a client receives on its redirectUrl) or by
-- POST /_matrix/client/v1/login/get_token, and deleted when a login uses them. Only a hash of
-- the token is kept. (Single sign-on identities themselves are in user_external_ids, 0023.)
CREATE TABLE login_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX login_tokens_expiry ON login_tokens (expires_ts);

-- uia_sso_completions are the user-interactive authentication sessions whose m.login.sso
-- stage a user completed by signing in again at their identity provider (the stage's
-- fallback page): the next request of that session is then authenticated as user_id, once.
CREATE TABLE uia_sso_completions (
    session_id TEXT NOT NULL PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);

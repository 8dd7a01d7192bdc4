-- email_sessions are the validations of email addresses this server runs itself (the
-- requestToken endpoints): a client's (client_secret, email) pair has one session, whose sid
-- the client later presents. token_hash is the SHA-256 of the token mailed to the user;
-- send_attempt is the highest attempt mailed, so a retry with the same attempt mails nothing.
-- A session is usable until expires_ts (Unix ms); validated_ts is set when the token was
-- submitted, 0 before. Used sessions (an account made, a password reset, an address added)
-- are deleted, as are expired ones when new sessions are made. uia_session is the
-- user-interactive authentication session in which the address was presented as a stage
-- before another (a registration token), '' when none.
CREATE TABLE email_sessions (
    sid           TEXT NOT NULL PRIMARY KEY,
    client_secret TEXT NOT NULL,
    email         TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    token_hash    TEXT NOT NULL,
    send_attempt  BIGINT NOT NULL,
    next_link     TEXT NOT NULL,
    created_ts    BIGINT NOT NULL,
    expires_ts    BIGINT NOT NULL,
    validated_ts  BIGINT NOT NULL,
    uia_session   TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX email_sessions_secret ON email_sessions (client_secret, email);
CREATE INDEX email_sessions_expiry ON email_sessions (expires_ts);
CREATE INDEX email_sessions_uia ON email_sessions (uia_session);

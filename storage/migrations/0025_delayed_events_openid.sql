-- OpenID tokens and delayed events (MSC4140).

-- openid_tokens are the tokens of POST /user/{userId}/openid/request_token, which a third
-- party (the LiveKit JWT service of MatrixRTC) checks through the federation API's
-- /openid/userinfo. token_hash is the SHA-256 of the token; expires_ts is Unix ms.
CREATE TABLE openid_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);

-- delayed_events are the events users scheduled (MSC4140). status is scheduled, sending (the
-- scheduler claimed it and is sending it, or crashed while doing so: sent again at start-up,
-- where the transaction ID "delayed.<delay_id>" makes the second send return the first
-- event), sent, cancelled or error. send_ts = running_since + delay_ms. reason is why it was
-- finalised: action (the send or cancel action) or delay (its time came); error is the
-- Matrix error (JSON) that cancelled it; finalised_ts is when it was finalised. txn_id is
-- the transaction ID of the request that scheduled it (empty for PUT /state, which has none),
-- so that a retried request gets the same delay_id back.
CREATE TABLE delayed_events (
    delay_id      TEXT NOT NULL PRIMARY KEY,
    user_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    state_key     TEXT,
    content       TEXT NOT NULL,
    delay_ms      BIGINT NOT NULL,
    running_since BIGINT NOT NULL,
    send_ts       BIGINT NOT NULL,
    status        TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    event_id      TEXT NOT NULL DEFAULT '',
    error         TEXT NOT NULL DEFAULT '',
    finalised_ts  BIGINT NOT NULL DEFAULT 0,
    txn_id        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX delayed_events_due ON delayed_events (status, send_ts);
CREATE INDEX delayed_events_user ON delayed_events (user_id, send_ts);
CREATE INDEX delayed_events_state ON delayed_events (room_id, event_type, state_key);
CREATE UNIQUE INDEX delayed_events_txn ON delayed_events (user_id, device_id, txn_id) WHERE txn_id <> '';

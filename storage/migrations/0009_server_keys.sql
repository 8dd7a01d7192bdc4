-- server_keys caches other homeservers' signing keys (the keyring of federationapi), one row
-- per server and key ID. key is the unpadded base64 ed25519 public key. A current key has
-- expired_ts 0 and is valid until valid_until_ts; an old key (from old_verify_keys) has
-- valid_until_ts 0 and verifies only what was signed before expired_ts. response_json is
-- the server's own signed /_matrix/key/v2/server response that carried the key, kept so that
-- the notary endpoint can serve it with the server's signature intact ('' when the key came
-- from elsewhere).
CREATE TABLE server_keys (
    server_name    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    key            TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired_ts     BIGINT NOT NULL,
    fetched_ts     BIGINT NOT NULL,
    response_json  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (server_name, key_id)
);

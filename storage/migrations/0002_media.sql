-- The media repository: one row per mxc:// URI and one per cached thumbnail. The bytes live in
-- the media store (files below media.path), written and synced before these rows commit.

-- media holds local uploads (server_name is this server) and, once federation fetches it,
-- cached remote media. uploaded_ts is 0 while an mxc:// URI made by /create awaits its content.
CREATE TABLE media (
    server_name  TEXT NOT NULL,
    media_id     TEXT NOT NULL,
    content_type TEXT NOT NULL DEFAULT '',
    upload_name  TEXT NOT NULL DEFAULT '',
    size         BIGINT NOT NULL DEFAULT 0,
    sha256       TEXT NOT NULL DEFAULT '',
    user_id      TEXT NOT NULL,
    created_ts   BIGINT NOT NULL,
    uploaded_ts  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (server_name, media_id)
);
CREATE INDEX media_pending_by_user ON media (user_id, uploaded_ts);

-- media_thumbnails caches generated thumbnails, keyed by the size and method asked for.
CREATE TABLE media_thumbnails (
    server_name  TEXT NOT NULL,
    media_id     TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    method       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    created_ts   BIGINT NOT NULL,
    PRIMARY KEY (server_name, media_id, width, height, method),
    FOREIGN KEY (server_name, media_id) REFERENCES media (server_name, media_id) ON DELETE CASCADE
);

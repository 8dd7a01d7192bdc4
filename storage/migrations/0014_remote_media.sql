-- The cache of other servers' media. A cached item is a media row with the origin's
-- server_name (its bytes under "remote/" in the media store, written and synced before these
-- rows commit), so that downloads and thumbnails read local and remote media alike; this table
-- marks the rows that came from federation and says when. The spec's freeze of the
-- unauthenticated media endpoints counts remote media as new from the time it was cached, and
-- a cache eviction would go by this time too.
CREATE TABLE remote_media (
    server_name TEXT NOT NULL,
    media_id    TEXT NOT NULL,
    fetched_ts  BIGINT NOT NULL,
    PRIMARY KEY (server_name, media_id),
    FOREIGN KEY (server_name, media_id) REFERENCES media (server_name, media_id) ON DELETE CASCADE
);

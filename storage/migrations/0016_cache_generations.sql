-- cache_generations has one row per in-process read cache (storage/cache.go). Every
-- transaction that writes a cache's data increments its row, whichever process runs it (the
-- server, another server process, an admin command such as reset-password); a process uses a
-- cached value only while the row still holds the generation it was read at.
CREATE TABLE cache_generations (
    name TEXT PRIMARY KEY,
    generation BIGINT NOT NULL
);
INSERT INTO cache_generations (name, generation) VALUES ('devices', 0), ('device_keys', 0), ('memberships', 0);

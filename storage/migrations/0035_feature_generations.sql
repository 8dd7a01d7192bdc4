-- Generations of the read caches that let the hot paths skip a statement for features most
-- servers seldom use (storage/featurecache.go): per-user message rate limit overrides, the
-- leaves recorded for purged rooms, each room's latest sticky event expiry and whether any
-- HTTP pusher exists.
INSERT INTO cache_generations (name, generation) VALUES ('ratelimit_overrides', 0), ('purged_room_leaves', 0), ('sticky_events', 0), ('pushers', 0);

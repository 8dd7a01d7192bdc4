-- Federation brings events that are not part of the room's timeline. events.hidden (formerly
-- "rejected") now means "not in the room event stream": /sync never returns a hidden event.
-- events.status says why an event is held:
--   ''            accepted into the timeline (the room event stream);
--   'backfilled'  accepted history fetched from another server: hidden from /sync, which has
--                 moved past it, but shown by /messages and /context;
--   'outlier'     known only as the auth or state of other events (send_join, /state_ids,
--                 /event_auth): shown nowhere;
--   'soft_failed' passed the auth rules at its place in the DAG but not against the room's
--                 current state: kept as a DAG node, never shown and never a forward extremity;
--   'rejected'    failed the auth rules: kept so that it is not fetched again, never used.
ALTER TABLE events RENAME COLUMN rejected TO hidden;
ALTER TABLE events ADD COLUMN status TEXT NOT NULL DEFAULT '';

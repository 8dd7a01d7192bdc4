-- events.has_children marks the events that other events relate to (m.relates_to), so that
-- formatting events for clients looks for bundled aggregations only where there are some.
ALTER TABLE events ADD COLUMN has_children BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE events SET has_children = TRUE WHERE event_id IN (SELECT relates_to FROM event_relations);

-- GET /rooms/{roomId}/timestamp_to_event finds a room's events by origin_server_ts.
CREATE INDEX events_room_ts ON events (room_nid, origin_ts, event_nid);

package storage

import (
	"context"
	"fmt"
)

// roomPurges are the statements that delete a room's data, $1 being its room NID, in an order
// that never leaves a row pointing at a deleted one. Every table that refers to a room (by
// room_nid, or an event or snapshot of the room) is listed; roomPurgesByID are those that
// name it by room ID. state_keys stays: its rows are shared by every room.
var roomPurges = []string{
	`DELETE FROM federation_queue_pdus WHERE event_nid IN (SELECT event_nid FROM events WHERE room_nid = $1)`,
	`DELETE FROM purge_history WHERE room_nid = $1`,
	`DELETE FROM event_push_actions WHERE room_nid = $1`,
	`DELETE FROM event_push_shared WHERE room_nid = $1`,
	`DELETE FROM event_push_apart WHERE room_nid = $1`,
	`DELETE FROM push_spans WHERE room_nid = $1`,
	`DELETE FROM receipts WHERE room_nid = $1`,
	`DELETE FROM appservice_room_directory WHERE room_nid = $1`,
	`DELETE FROM event_relations WHERE room_nid = $1`,
	`DELETE FROM sticky_events WHERE room_nid = $1`,
	`DELETE FROM event_search WHERE room_nid = $1`,
	`DELETE FROM txn_ids WHERE room_nid = $1`,
	`DELETE FROM memberships WHERE room_nid = $1`,
	`DELETE FROM current_state WHERE room_nid = $1`,
	`DELETE FROM forward_extremities WHERE room_nid = $1`,
	`DELETE FROM partial_state_rooms WHERE room_nid = $1`,
	`DELETE FROM state_snapshot_entries WHERE snapshot_nid IN (SELECT snapshot_nid FROM state_snapshots WHERE room_nid = $1)`,
	`DELETE FROM state_snapshots WHERE room_nid = $1`,
	`DELETE FROM events WHERE room_nid = $1`,
	`DELETE FROM rooms WHERE room_nid = $1`,
}

var roomPurgesByID = []string{
	`DELETE FROM account_data WHERE room_id = $1`,
	`DELETE FROM room_aliases WHERE room_id = $1`,
	`DELETE FROM server_notice_rooms WHERE room_id = $1`,
	`DELETE FROM sliding_sync_rooms WHERE room_id = $1`,
	`DELETE FROM thread_subscriptions WHERE room_id = $1`,
	`DELETE FROM delayed_events WHERE room_id = $1`, // a purged room's delayed events are never sent
}

// PurgeRoom deletes everything this server stores of a room, in this transaction (the
// admin API's delete room with purge). Users' memberships of the room go too, so that their
// /sync no longer shows it. The room's block, if any, stays, and so do reports about it.
func (tx *Tx) PurgeRoom(ctx context.Context, roomNID int64, roomID string) error {
	tx.membershipsChanged = true
	for _, stmt := range roomPurges {
		if _, err := tx.exec(ctx, stmt, roomNID); err != nil {
			return fmt.Errorf("purge room %s: %s: %w", roomID, stmt, err)
		}
	}
	for _, stmt := range roomPurgesByID {
		if _, err := tx.exec(ctx, stmt, roomID); err != nil {
			return fmt.Errorf("purge room %s: %s: %w", roomID, stmt, err)
		}
	}
	return nil
}

// RoomQueuedPDUs counts the events of the room still queued for other servers.
func (q *Q) RoomQueuedPDUs(ctx context.Context, roomNID int64) (int64, error) {
	var n int64
	err := q.queryRow(ctx, `SELECT COUNT(*) FROM federation_queue_pdus q
		JOIN events e ON e.event_nid = q.event_nid WHERE e.room_nid = $1`, roomNID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count queued PDUs of room %d: %w", roomNID, err)
	}
	return n, nil
}

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tidwall/gjson"
)

// RoomSummary is what the admin API's room list and room details show of a room, read from
// its current state and memberships.
type RoomSummary struct {
	NID                int64
	RoomID             string
	Version            string
	Public             bool
	JoinedMembers      int64
	JoinedLocalMembers int64
	StateEvents        int64
	// The room's current state events with an empty state key (their JSON), by type (only
	// the types summaryTypes lists).
	State map[string]gjson.Result
}

// summaryTypes are the state event types a RoomSummary reads.
var summaryTypes = []any{
	"m.room.create", "m.room.name", "m.room.canonical_alias", "m.room.topic", "m.room.avatar",
	"m.room.encryption", "m.room.join_rules", "m.room.guest_access", "m.room.history_visibility",
}

// RoomSummaries returns the summaries of every room (roomNID 0) or of one room, in a fixed
// number of queries whatever the number of rooms. localSuffix (":" and the server name) tells
// local users.
func (q *Q) RoomSummaries(ctx context.Context, localSuffix string, roomNID int64) ([]*RoomSummary, error) {
	// Each query reads one room (room_nid = $1) or every room (TRUE, $1 unused but given).
	only := func(col string) string {
		if roomNID == 0 {
			return "($1 = 0)"
		}
		return "(" + col + " = $1)"
	}
	rows, err := q.query(ctx, `SELECT room_nid, room_id, room_version, visibility FROM rooms
		WHERE `+only("room_nid")+` ORDER BY room_nid`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("select rooms: %w", err)
	}
	var out []*RoomSummary
	byNID := map[int64]*RoomSummary{}
	for rows.Next() {
		s := RoomSummary{State: map[string]gjson.Result{}}
		var vis string
		if err := rows.Scan(&s.NID, &s.RoomID, &s.Version, &vis); err != nil {
			rows.Close()
			return nil, err
		}
		s.Public = vis == "public"
		out = append(out, &s)
		byNID[s.NID] = &s
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Joined members, all and local: the local ones end with localSuffix.
	rows, err = q.query(ctx, `SELECT room_nid, COUNT(*),
			SUM(CASE WHEN SUBSTR(user_id, LENGTH(user_id) - $3 + 1) = $2 THEN 1 ELSE 0 END)
		FROM memberships WHERE membership = 'join' AND `+only("room_nid")+` GROUP BY room_nid`, roomNID, localSuffix, len(localSuffix))
	if err != nil {
		return nil, fmt.Errorf("count members: %w", err)
	}
	for rows.Next() {
		var nid, all, local int64
		if err := rows.Scan(&nid, &all, &local); err != nil {
			rows.Close()
			return nil, err
		}
		if s := byNID[nid]; s != nil {
			s.JoinedMembers, s.JoinedLocalMembers = all, local
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = q.query(ctx, `SELECT room_nid, COUNT(*) FROM current_state WHERE `+only("room_nid")+` GROUP BY room_nid`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("count state: %w", err)
	}
	for rows.Next() {
		var nid, n int64
		if err := rows.Scan(&nid, &n); err != nil {
			rows.Close()
			return nil, err
		}
		if s := byNID[nid]; s != nil {
			s.StateEvents = n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	placeholders := ""
	for i := range summaryTypes {
		if i > 0 {
			placeholders += ", "
		}
		placeholders += fmt.Sprintf("$%d", i+2)
	}
	rows, err = q.query(ctx, `SELECT c.room_nid, e.event_type, e.event_json FROM current_state c
		JOIN events e ON e.event_nid = c.event_nid
		WHERE `+only("c.room_nid")+` AND c.state_key_nid IN (
			SELECT state_key_nid FROM state_keys WHERE state_key = '' AND event_type IN (`+placeholders+`))`,
		append([]any{roomNID}, summaryTypes...)...)
	if err != nil {
		return nil, fmt.Errorf("select summary state: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var nid int64
		var typ, js string
		if err := rows.Scan(&nid, &typ, &js); err != nil {
			return nil, err
		}
		if s := byNID[nid]; s != nil {
			s.State[typ] = gjson.Parse(js)
		}
	}
	return out, rows.Err()
}

// JoinedLocalDevices counts the devices of the users joined to the room (only local users
// have devices here).
func (q *Q) JoinedLocalDevices(ctx context.Context, roomNID int64) (int64, error) {
	var n int64
	err := q.queryRow(ctx, `SELECT COUNT(*) FROM devices d JOIN memberships m ON m.user_id = d.user_id
		WHERE m.room_nid = $1 AND m.membership = 'join'`, roomNID).Scan(&n)
	return n, err
}

// ForgottenLocally reports whether no local user keeps the room unforgotten (every local
// membership of it is forgotten, or there is none).
func (q *Q) ForgottenLocally(ctx context.Context, roomNID int64, localSuffix string) (bool, error) {
	var n int64
	err := q.queryRow(ctx, `SELECT COUNT(*) FROM memberships WHERE room_nid = $1 AND NOT forgotten
		AND SUBSTR(user_id, LENGTH(user_id) - $3 + 1) = $2`, roomNID, localSuffix, len(localSuffix)).Scan(&n)
	return n == 0, err
}

// BlockRoom blocks roomID for local users; userID is the admin who did it.
func (tx *Tx) BlockRoom(ctx context.Context, roomID, userID string, ts int64) error {
	_, err := tx.exec(ctx, `INSERT INTO blocked_rooms (room_id, user_id, blocked_ts) VALUES ($1, $2, $3)
		ON CONFLICT (room_id) DO NOTHING`, roomID, userID, ts)
	if err != nil {
		return fmt.Errorf("block room %s: %w", roomID, err)
	}
	return nil
}

// UnblockRoom lifts the block of roomID.
func (tx *Tx) UnblockRoom(ctx context.Context, roomID string) error {
	_, err := tx.exec(ctx, `DELETE FROM blocked_rooms WHERE room_id = $1`, roomID)
	if err != nil {
		return fmt.Errorf("unblock room %s: %w", roomID, err)
	}
	return nil
}

// RoomBlockedBy returns the admin who blocked roomID, or ErrNotFound when it is not blocked.
func (q *Q) RoomBlockedBy(ctx context.Context, roomID string) (string, error) {
	var userID string
	err := q.queryRow(ctx, `SELECT user_id FROM blocked_rooms WHERE room_id = $1`, roomID).Scan(&userID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("select blocked room %s: %w", roomID, err)
	}
	return userID, nil
}

// RoomDelete is one admin room deletion.
type RoomDelete struct {
	DeleteID string
	RoomID   string
	Status   string // scheduled, active, complete or failed
	Error    string
	Result   string // the shutdown_room object, JSON ("" until known)
}

// InsertRoomDelete records a new deletion.
func (tx *Tx) InsertRoomDelete(ctx context.Context, d RoomDelete, ts int64) error {
	_, err := tx.exec(ctx, `INSERT INTO room_deletes (delete_id, room_id, status, error, result, created_ts, updated_ts)
		VALUES ($1, $2, $3, $4, $5, $6, $6)`, d.DeleteID, d.RoomID, d.Status, d.Error, d.Result, ts)
	if err != nil {
		return fmt.Errorf("insert room delete %s: %w", d.DeleteID, err)
	}
	return nil
}

// UpdateRoomDelete records the progress of a deletion.
func (tx *Tx) UpdateRoomDelete(ctx context.Context, d RoomDelete, ts int64) error {
	_, err := tx.exec(ctx, `UPDATE room_deletes SET status = $2, error = $3, result = $4, updated_ts = $5
		WHERE delete_id = $1`, d.DeleteID, d.Status, d.Error, d.Result, ts)
	if err != nil {
		return fmt.Errorf("update room delete %s: %w", d.DeleteID, err)
	}
	return nil
}

// FailUnfinishedRoomDeletes marks the deletions left scheduled or active (by a process that
// stopped) failed.
func (tx *Tx) FailUnfinishedRoomDeletes(ctx context.Context, reason string, ts int64) error {
	_, err := tx.exec(ctx, `UPDATE room_deletes SET status = 'failed', error = $1, updated_ts = $2
		WHERE status IN ('scheduled', 'active')`, reason, ts)
	return err
}

// RoomDeletes returns the deletions of a room (roomID) or the one with deleteID.
func (q *Q) RoomDeletes(ctx context.Context, roomID, deleteID string) ([]RoomDelete, error) {
	rows, err := q.query(ctx, `SELECT delete_id, room_id, status, error, result FROM room_deletes
		WHERE ($1 <> '' AND room_id = $1) OR ($2 <> '' AND delete_id = $2) ORDER BY created_ts, delete_id`, roomID, deleteID)
	if err != nil {
		return nil, fmt.Errorf("select room deletes: %w", err)
	}
	defer rows.Close()
	var out []RoomDelete
	for rows.Next() {
		var d RoomDelete
		if err := rows.Scan(&d.DeleteID, &d.RoomID, &d.Status, &d.Error, &d.Result); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ExtremityInfo is a forward extremity as the admin API shows it.
type ExtremityInfo struct {
	EventID    string `json:"event_id"`
	StateGroup int64  `json:"state_group"`
	Depth      int64  `json:"depth"`
	ReceivedTS int64  `json:"received_ts"`
}

// ForwardExtremityInfo returns the room's forward extremities, deepest first. Lattice keeps
// no receive time: received_ts is the event's origin_server_ts; state_group is the snapshot
// of the room's state once the event was committed (else the state before it).
func (q *Q) ForwardExtremityInfo(ctx context.Context, roomNID int64) ([]ExtremityInfo, error) {
	rows, err := q.query(ctx, `SELECT e.event_id, CASE WHEN e.room_state_nid <> 0 THEN e.room_state_nid ELSE e.state_before_nid END,
			e.depth, e.origin_ts
		FROM forward_extremities f JOIN events e ON e.event_nid = f.event_nid
		WHERE f.room_nid = $1 ORDER BY e.depth DESC, e.event_nid DESC`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("select extremities: %w", err)
	}
	defer rows.Close()
	out := []ExtremityInfo{}
	for rows.Next() {
		var x ExtremityInfo
		if err := rows.Scan(&x.EventID, &x.StateGroup, &x.Depth, &x.ReceivedTS); err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// PartialStateRoom is a room joined with partial state (send_join with omit_members) whose
// full state is still being fetched: a row of partial_state_rooms.
type PartialStateRoom struct {
	RoomNID       int64
	RoomID        string
	JoinEventID   string   // the join event whose state before is partial
	JoinedVia     string   // the server that answered send_join
	ServersInRoom []string // the servers with joined members before the join, as it said
	CreatedTS     int64
	Attempts      int
	LastError     string
}

// InsertPartialStateRoom records that a room's state is partial.
func (tx *Tx) InsertPartialStateRoom(ctx context.Context, p PartialStateRoom) error {
	servers, err := json.Marshal(p.ServersInRoom)
	if err != nil {
		return err
	}
	_, err = tx.exec(ctx, `
		INSERT INTO partial_state_rooms (room_nid, room_id, join_event_id, joined_via, servers_in_room, created_ts)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (room_nid) DO UPDATE SET join_event_id = $3, joined_via = $4, servers_in_room = $5, created_ts = $6, attempts = 0, last_error = ''`,
		p.RoomNID, p.RoomID, p.JoinEventID, p.JoinedVia, string(servers), p.CreatedTS)
	if err != nil {
		return fmt.Errorf("insert partial state room %s: %w", p.RoomID, err)
	}
	return nil
}

// DeletePartialStateRoom records that a room's state is complete.
func (tx *Tx) DeletePartialStateRoom(ctx context.Context, roomNID int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM partial_state_rooms WHERE room_nid = $1`, roomNID); err != nil {
		return fmt.Errorf("delete partial state room %d: %w", roomNID, err)
	}
	return nil
}

// RecordPartialStateError counts a failed resync attempt of a room.
func (db *DB) RecordPartialStateError(ctx context.Context, roomNID int64, msg string) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		if _, err := tx.exec(ctx, `UPDATE partial_state_rooms SET attempts = attempts + 1, last_error = $2 WHERE room_nid = $1`, roomNID, msg); err != nil {
			return fmt.Errorf("record partial state error %d: %w", roomNID, err)
		}
		return nil
	})
}

const partialStateColumns = `room_nid, room_id, join_event_id, joined_via, servers_in_room, created_ts, attempts, last_error`

func scanPartialState(sc interface{ Scan(...any) error }) (*PartialStateRoom, error) {
	var p PartialStateRoom
	var servers string
	if err := sc.Scan(&p.RoomNID, &p.RoomID, &p.JoinEventID, &p.JoinedVia, &servers, &p.CreatedTS, &p.Attempts, &p.LastError); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(servers), &p.ServersInRoom); err != nil {
		return nil, fmt.Errorf("partial state room %s: servers_in_room: %w", p.RoomID, err)
	}
	return &p, nil
}

// PartialStateRoom returns the partial state row of a room, or ErrNotFound when its state is
// complete.
func (q *Q) PartialStateRoom(ctx context.Context, roomNID int64) (*PartialStateRoom, error) {
	p, err := scanPartialState(q.queryRow(ctx, `SELECT `+partialStateColumns+` FROM partial_state_rooms WHERE room_nid = $1`, roomNID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select partial state room %d: %w", roomNID, err)
	}
	return p, nil
}

// PartialStateRooms returns every room whose state is partial.
func (q *Q) PartialStateRooms(ctx context.Context) ([]*PartialStateRoom, error) {
	rows, err := q.query(ctx, `SELECT `+partialStateColumns+` FROM partial_state_rooms ORDER BY room_nid`)
	if err != nil {
		return nil, fmt.Errorf("select partial state rooms: %w", err)
	}
	defer rows.Close()
	var out []*PartialStateRoom
	for rows.Next() {
		p, err := scanPartialState(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// FillRootSnapshots adds to every whole (parentless) state snapshot of a room the entries of
// fill (state key NID -> event NID) whose keys it lacks: the state completed by a partial
// state resync becomes the base under which every later snapshot's own changes stay.
func (tx *Tx) FillRootSnapshots(ctx context.Context, roomNID int64, fill map[int64]int64) error {
	for k, ev := range fill {
		if _, err := tx.exec(ctx, `
			INSERT INTO state_snapshot_entries (snapshot_nid, state_key_nid, event_nid)
			SELECT snapshot_nid, $2, $3 FROM state_snapshots WHERE room_nid = $1 AND parent_nid = 0
			ON CONFLICT (snapshot_nid, state_key_nid) DO NOTHING`, roomNID, k, ev); err != nil {
			return fmt.Errorf("fill root snapshots of room %d: %w", roomNID, err)
		}
	}
	return nil
}

// RoomEventsSince returns up to limit accepted (not hidden) events of the room with NID
// greater than after, oldest first.
func (q *Q) RoomEventsSince(ctx context.Context, roomNID, after int64, limit int) ([]*Event, error) {
	return q.events(ctx, `SELECT `+eventColumns+` FROM events
		WHERE room_nid = $1 AND event_nid > $2 AND NOT hidden
		ORDER BY event_nid LIMIT $3`, roomNID, after, limit)
}

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Room is a room this server knows about.
type Room struct {
	NID              int64
	RoomID           string
	Version          string
	Visibility       string
	StateSnapshotNID int64
	MaxDepth         int64
}

// InsertRoom creates the room row; ErrConflict if it exists.
func (tx *Tx) InsertRoom(ctx context.Context, roomID, version string, ts int64) (int64, error) {
	var nid int64
	err := tx.queryRow(ctx, `
		INSERT INTO rooms (room_id, room_version, created_ts) VALUES ($1, $2, $3)
		ON CONFLICT (room_id) DO NOTHING
		RETURNING room_nid`, roomID, version, ts).Scan(&nid)
	if errors.Is(err, sql.ErrNoRows) || tx.dialect.isUniqueViolation(err) {
		return 0, ErrConflict
	} else if err != nil {
		return 0, fmt.Errorf("insert room %s: %w", roomID, err)
	}
	return nid, nil
}

// Room returns the room with the given ID, or ErrNotFound.
func (q *Q) Room(ctx context.Context, roomID string) (*Room, error) {
	var r Room
	err := q.queryRow(ctx, `
		SELECT room_nid, room_id, room_version, visibility, state_snapshot_nid, max_depth
		FROM rooms WHERE room_id = $1`, roomID,
	).Scan(&r.NID, &r.RoomID, &r.Version, &r.Visibility, &r.StateSnapshotNID, &r.MaxDepth)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select room %s: %w", roomID, err)
	}
	return &r, nil
}

// RoomIDs maps room NIDs to room IDs for the given NIDs.
func (q *Q) RoomIDs(ctx context.Context) (map[int64]string, error) {
	rows, err := q.query(ctx, `SELECT room_nid, room_id FROM rooms`)
	if err != nil {
		return nil, fmt.Errorf("select room ids: %w", err)
	}
	defer rows.Close()
	out := make(map[int64]string)
	for rows.Next() {
		var nid int64
		var id string
		if err := rows.Scan(&nid, &id); err != nil {
			return nil, err
		}
		out[nid] = id
	}
	return out, rows.Err()
}

// SetRoomState records the room's current state snapshot and maximum depth.
func (tx *Tx) SetRoomState(ctx context.Context, roomNID, snapshotNID, maxDepth int64) error {
	_, err := tx.exec(ctx, `UPDATE rooms SET state_snapshot_nid = $2, max_depth = $3 WHERE room_nid = $1`, roomNID, snapshotNID, maxDepth)
	if err != nil {
		return fmt.Errorf("update room state %d: %w", roomNID, err)
	}
	return nil
}

// SetRoomVisibility sets whether the room is listed in the public directory.
func (tx *Tx) SetRoomVisibility(ctx context.Context, roomNID int64, visibility string) error {
	_, err := tx.exec(ctx, `UPDATE rooms SET visibility = $2 WHERE room_nid = $1`, roomNID, visibility)
	return err
}

// ForwardExtremities returns the event NIDs with no known children in the room.
func (q *Q) ForwardExtremities(ctx context.Context, roomNID int64) ([]int64, error) {
	return q.int64s(ctx, `SELECT event_nid FROM forward_extremities WHERE room_nid = $1 ORDER BY event_nid`, roomNID)
}

// SetForwardExtremities replaces the room's forward extremities.
func (tx *Tx) SetForwardExtremities(ctx context.Context, roomNID int64, eventNIDs []int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM forward_extremities WHERE room_nid = $1`, roomNID); err != nil {
		return fmt.Errorf("delete extremities: %w", err)
	}
	for _, nid := range eventNIDs {
		if _, err := tx.exec(ctx, `INSERT INTO forward_extremities (room_nid, event_nid) VALUES ($1, $2)`, roomNID, nid); err != nil {
			return fmt.Errorf("insert extremity: %w", err)
		}
	}
	return nil
}

func (q *Q) int64s(ctx context.Context, query string, args ...any) ([]int64, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (q *Q) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

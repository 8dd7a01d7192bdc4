package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// SlidingConn is the stored newest state of a sliding sync connection: its pos, its header
// and, by room ID, what it has of each room. The header and room values are opaque JSON the
// sync API writes and reads.
type SlidingConn struct {
	Pos    int64
	Header string
	Rooms  map[string]string
}

// SlidingConnKey names a connection: conn_id is scoped to the user and device.
type SlidingConnKey struct {
	UserID, DeviceID, ConnID string
}

// SlidingConnWrite is one connection's change since its last write: the new pos and header,
// the rooms whose value changed (or were added) and the rooms it no longer has. Replace
// drops every stored room first (the connection started again).
type SlidingConnWrite struct {
	Key     SlidingConnKey
	Pos     int64
	Header  string
	Replace bool
	Rooms   map[string]string
	Dropped []string
}

// SlidingConnection returns the stored state of a connection, or ErrNotFound.
func (q *Q) SlidingConnection(ctx context.Context, key SlidingConnKey) (*SlidingConn, error) {
	c := SlidingConn{Rooms: map[string]string{}}
	err := q.queryRow(ctx, `SELECT pos, header FROM sliding_sync_connections
		WHERE user_id = $1 AND device_id = $2 AND conn_id = $3`, key.UserID, key.DeviceID, key.ConnID).Scan(&c.Pos, &c.Header)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select sliding sync connection of %s: %w", key.UserID, err)
	}
	rows, err := q.query(ctx, `SELECT room_id, sent FROM sliding_sync_rooms
		WHERE user_id = $1 AND device_id = $2 AND conn_id = $3`, key.UserID, key.DeviceID, key.ConnID)
	if err != nil {
		return nil, fmt.Errorf("select sliding sync rooms of %s: %w", key.UserID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var roomID, sent string
		if err := rows.Scan(&roomID, &sent); err != nil {
			return nil, err
		}
		c.Rooms[roomID] = sent
	}
	return &c, rows.Err()
}

// WriteSlidingConnection stores one connection's change (see SlidingConnWrite); now is the
// time in milliseconds, kept to purge connections left unused.
func (tx *Tx) WriteSlidingConnection(ctx context.Context, w SlidingConnWrite, now int64) error {
	k := w.Key
	if _, err := tx.exec(ctx, `
		INSERT INTO sliding_sync_connections (user_id, device_id, conn_id, pos, header, updated_ts)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (user_id, device_id, conn_id) DO UPDATE SET pos = $4, header = $5, updated_ts = $6`,
		k.UserID, k.DeviceID, k.ConnID, w.Pos, w.Header, now); err != nil {
		return fmt.Errorf("upsert sliding sync connection of %s: %w", k.UserID, err)
	}
	if w.Replace {
		if _, err := tx.exec(ctx, `DELETE FROM sliding_sync_rooms WHERE user_id = $1 AND device_id = $2 AND conn_id = $3`,
			k.UserID, k.DeviceID, k.ConnID); err != nil {
			return fmt.Errorf("delete sliding sync rooms of %s: %w", k.UserID, err)
		}
	}
	for _, roomID := range w.Dropped {
		if _, err := tx.exec(ctx, `DELETE FROM sliding_sync_rooms WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND room_id = $4`,
			k.UserID, k.DeviceID, k.ConnID, roomID); err != nil {
			return fmt.Errorf("delete sliding sync room %s: %w", roomID, err)
		}
	}
	for roomID, sent := range w.Rooms {
		if _, err := tx.exec(ctx, `
			INSERT INTO sliding_sync_rooms (user_id, device_id, conn_id, room_id, sent) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id, device_id, conn_id, room_id) DO UPDATE SET sent = $5`,
			k.UserID, k.DeviceID, k.ConnID, roomID, sent); err != nil {
			return fmt.Errorf("upsert sliding sync room %s: %w", roomID, err)
		}
	}
	return nil
}

// PurgeSlidingConnections deletes the connections not written since before (milliseconds),
// with their rooms, and returns how many connections went.
func (tx *Tx) PurgeSlidingConnections(ctx context.Context, before int64) (int64, error) {
	res, err := tx.exec(ctx, `DELETE FROM sliding_sync_connections WHERE updated_ts < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("purge sliding sync connections: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := tx.exec(ctx, `DELETE FROM sliding_sync_rooms WHERE NOT EXISTS (
		SELECT 1 FROM sliding_sync_connections c
		WHERE c.user_id = sliding_sync_rooms.user_id AND c.device_id = sliding_sync_rooms.device_id
		  AND c.conn_id = sliding_sync_rooms.conn_id)`); err != nil {
		return 0, fmt.Errorf("purge sliding sync rooms: %w", err)
	}
	return n, nil
}

package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// The queries of sliding sync (syncapi/slidingsync*.go) that look at a few rooms, or at one
// window of a stream, rather than at all of a user's rooms.

// JoinedRoomsWithEvents returns the rooms userID is joined to that have timeline events
// with stream positions in (after, upTo], each with the newest such position.
func (q *Q) JoinedRoomsWithEvents(ctx context.Context, userID string, after, upTo int64) (map[int64]int64, error) {
	rows, err := q.query(ctx, `
		SELECT e.room_nid, MAX(e.event_nid) FROM events e
		WHERE e.event_nid > $2 AND e.event_nid <= $3 AND NOT e.hidden
			AND e.room_nid IN (SELECT room_nid FROM memberships WHERE user_id = $1 AND membership = 'join')
		GROUP BY e.room_nid`, userID, after, upTo)
	if err != nil {
		return nil, fmt.Errorf("select rooms with events of %s: %w", userID, err)
	}
	return scanRoomPositions(rows)
}

// RoomsWithEvents returns the rooms (of any user) with timeline events at stream positions in
// (after, upTo], each with the newest such position: a range scan of the events stream, cheap
// when the range is short. The caller keeps the rooms it cares about.
func (q *Q) RoomsWithEvents(ctx context.Context, after, upTo int64) (map[int64]int64, error) {
	rows, err := q.query(ctx, `
		SELECT room_nid, MAX(event_nid) FROM events
		WHERE event_nid > $1 AND event_nid <= $2 AND NOT hidden
		GROUP BY room_nid`, after, upTo)
	if err != nil {
		return nil, fmt.Errorf("select rooms with events in (%d, %d]: %w", after, upTo, err)
	}
	return scanRoomPositions(rows)
}

// scanRoomPositions reads (room NID, stream position) rows into a map and closes them.
func scanRoomPositions(rows *sql.Rows) (map[int64]int64, error) {
	defer rows.Close()
	out := map[int64]int64{}
	for rows.Next() {
		var room, nid int64
		if err := rows.Scan(&room, &nid); err != nil {
			return nil, err
		}
		out[room] = nid
	}
	return out, rows.Err()
}

// RoomReceiptsSince returns the receipts of one room whose stream position is after since
// and at or before upTo, in stream order, as userID may see them (private receipts only
// their own).
func (q *Q) RoomReceiptsSince(ctx context.Context, userID string, roomNID, since, upTo int64) ([]Receipt, error) {
	rows, err := q.query(ctx, `
		SELECT room_nid, user_id, receipt_type, thread_id, event_id, event_nid, ts, stream_pos
		FROM receipts
		WHERE room_nid = $1 AND stream_pos > $2 AND stream_pos <= $3
			AND (receipt_type <> $4 OR user_id = $5)
		ORDER BY stream_pos`, roomNID, since, upTo, ReceiptPrivate, userID)
	if err != nil {
		return nil, fmt.Errorf("select receipts of room %d: %w", roomNID, err)
	}
	return scanReceipts(rows)
}

// OwnReadReceiptsSince returns the rooms userID is joined to where their own read receipt
// (m.read or m.read.private, any thread) moved in (since, upTo], each with the newest
// stream position: the rooms whose unread counts may have changed without a new event.
func (q *Q) OwnReadReceiptsSince(ctx context.Context, userID string, since, upTo int64) (map[int64]int64, error) {
	rows, err := q.query(ctx, `
		SELECT r.room_nid, MAX(r.stream_pos)
		FROM memberships m JOIN receipts r ON r.room_nid = m.room_nid AND r.user_id = m.user_id
		WHERE m.user_id = $1 AND m.membership = 'join' AND r.receipt_type IN ('m.read', $4)
			AND r.stream_pos > $2 AND r.stream_pos <= $3
		GROUP BY r.room_nid`, userID, since, upTo, ReceiptPrivate)
	if err != nil {
		return nil, fmt.Errorf("select own receipts of %s: %w", userID, err)
	}
	defer rows.Close()
	out := map[int64]int64{}
	for rows.Next() {
		var room, pos int64
		if err := rows.Scan(&room, &pos); err != nil {
			return nil, err
		}
		out[room] = pos
	}
	return out, rows.Err()
}

// RoomAccountDataSince returns userID's account data of one room whose stream position is
// after since and at or before upTo, in stream order (deleted entries only when since > 0).
func (q *Q) RoomAccountDataSince(ctx context.Context, userID, roomID string, since, upTo int64) ([]AccountData, error) {
	rows, err := q.query(ctx, `
		SELECT room_id, data_type, content, stream_pos FROM account_data
		WHERE user_id = $1 AND room_id = $2 AND stream_pos > $3 AND stream_pos <= $4 AND ($3 > 0 OR content <> '{}')
		ORDER BY stream_pos`, userID, roomID, since, upTo)
	if err != nil {
		return nil, fmt.Errorf("select account data of %s: %w", roomID, err)
	}
	defer rows.Close()
	var out []AccountData
	for rows.Next() {
		var a AccountData
		if err := rows.Scan(&a.RoomID, &a.Type, &a.Content, &a.StreamPos); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

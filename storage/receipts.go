package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// Receipt is the latest receipt of one user, room, receipt type and thread. ThreadID is ""
// for an unthreaded receipt.
type Receipt struct {
	RoomNID   int64
	UserID    string
	Type      string
	ThreadID  string
	EventID   string
	EventNID  int64
	TS        int64
	StreamPos int64
}

// ReceiptPrivate is the receipt type that only its owner may see.
const ReceiptPrivate = "m.read.private"

// SetReceipt stores r as the latest receipt of its user, room, type and thread, and returns
// its new position in the receipts stream. A receipt for an event older than the stored one
// (a smaller event NID) changes nothing, as receipts mark "read up to", which does not move
// backwards: it then returns 0. The check is part of the upsert, so that two concurrent
// receipts cannot both pass it.
func (tx *Tx) SetReceipt(ctx context.Context, r Receipt) (int64, error) {
	pos, err := tx.NextStreamPos(ctx, StreamReceipts)
	if err != nil {
		return 0, err
	}
	res, err := tx.exec(ctx, `
		INSERT INTO receipts (room_nid, user_id, receipt_type, thread_id, event_id, event_nid, ts, stream_pos)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (room_nid, user_id, receipt_type, thread_id)
		DO UPDATE SET event_id = $5, event_nid = $6, ts = $7, stream_pos = $8
		WHERE receipts.event_nid <= $6`,
		r.RoomNID, r.UserID, r.Type, r.ThreadID, r.EventID, r.EventNID, r.TS, pos)
	if err != nil {
		return 0, fmt.Errorf("upsert receipt %s %s: %w", r.UserID, r.Type, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return 0, fmt.Errorf("upsert receipt %s %s: %w", r.UserID, r.Type, err)
	} else if n == 0 {
		// The stream position stays unused: positions may have gaps.
		return 0, nil
	}
	return pos, nil
}

// ReceiptsSince returns the receipts of the rooms userID is joined to whose stream position
// is after since and at or before upTo, in stream order. Private receipts are returned only
// when they are userID's own.
func (q *Q) ReceiptsSince(ctx context.Context, userID string, since, upTo int64) ([]Receipt, error) {
	rows, err := q.query(ctx, `
		SELECT r.room_nid, r.user_id, r.receipt_type, r.thread_id, r.event_id, r.event_nid, r.ts, r.stream_pos
		FROM memberships m JOIN receipts r ON r.room_nid = m.room_nid
		WHERE m.user_id = $1 AND m.membership = 'join'
			AND r.stream_pos > $2 AND r.stream_pos <= $3
			AND (r.receipt_type <> $4 OR r.user_id = $1)
		ORDER BY r.stream_pos`, userID, since, upTo, ReceiptPrivate)
	if err != nil {
		return nil, fmt.Errorf("select receipts of %s: %w", userID, err)
	}
	return scanReceipts(rows)
}

// scanReceipts reads rows of (room_nid, user_id, receipt_type, thread_id, event_id,
// event_nid, ts, stream_pos) and closes them.
func scanReceipts(rows *sql.Rows) ([]Receipt, error) {
	defer rows.Close()
	var out []Receipt
	for rows.Next() {
		var r Receipt
		if err := rows.Scan(&r.RoomNID, &r.UserID, &r.Type, &r.ThreadID, &r.EventID, &r.EventNID, &r.TS, &r.StreamPos); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

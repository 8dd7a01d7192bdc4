package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// TxnEvent returns the event a device already sent into the room with txnID, or ErrNotFound.
func (q *Q) TxnEvent(ctx context.Context, userID, deviceID string, roomNID int64, txnID string) (string, error) {
	var eventID string
	err := q.queryRow(ctx, `SELECT event_id FROM txn_ids WHERE user_id = $1 AND device_id = $2 AND room_nid = $3 AND txn_id = $4`,
		userID, deviceID, roomNID, txnID).Scan(&eventID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("select txn %s: %w", txnID, err)
	}
	return eventID, nil
}

// InsertTxn records that a device's txnID produced eventID.
func (tx *Tx) InsertTxn(ctx context.Context, userID, deviceID string, roomNID int64, txnID, eventID string, ts int64) error {
	_, err := tx.exec(ctx, `
		INSERT INTO txn_ids (user_id, device_id, room_nid, txn_id, event_id, created_ts) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (user_id, device_id, room_nid, txn_id) DO NOTHING`, userID, deviceID, roomNID, txnID, eventID, ts)
	if err != nil {
		return fmt.Errorf("insert txn %s: %w", txnID, err)
	}
	return nil
}

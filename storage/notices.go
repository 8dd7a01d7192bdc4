package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ServerNoticeRoom returns the room in which userID receives server notices, or ErrNotFound.
func (q *Q) ServerNoticeRoom(ctx context.Context, userID string) (string, error) {
	var roomID string
	err := q.queryRow(ctx, `SELECT room_id FROM server_notice_rooms WHERE user_id = $1`, userID).Scan(&roomID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("select server notice room of %s: %w", userID, err)
	}
	return roomID, nil
}

// SetServerNoticeRoom records the room in which userID receives server notices.
func (tx *Tx) SetServerNoticeRoom(ctx context.Context, userID, roomID string) error {
	_, err := tx.exec(ctx, `INSERT INTO server_notice_rooms (user_id, room_id) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET room_id = $2`, userID, roomID)
	if err != nil {
		return fmt.Errorf("insert server notice room of %s: %w", userID, err)
	}
	return nil
}

// ServerNoticeTxn returns the event an admin's earlier server notice with this transaction
// ID sent, or ErrNotFound.
func (q *Q) ServerNoticeTxn(ctx context.Context, adminID, txnID string) (string, error) {
	var eventID string
	err := q.queryRow(ctx, `SELECT event_id FROM server_notice_txns WHERE admin_id = $1 AND txn_id = $2`, adminID, txnID).Scan(&eventID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("select server notice txn: %w", err)
	}
	return eventID, nil
}

// InsertServerNoticeTxn records the event a server notice with this transaction ID sent.
func (tx *Tx) InsertServerNoticeTxn(ctx context.Context, adminID, txnID, eventID string) error {
	_, err := tx.exec(ctx, `INSERT INTO server_notice_txns (admin_id, txn_id, event_id) VALUES ($1, $2, $3)
		ON CONFLICT (admin_id, txn_id) DO NOTHING`, adminID, txnID, eventID)
	if err != nil {
		return fmt.Errorf("insert server notice txn: %w", err)
	}
	return nil
}

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AccountData is one account data entry; RoomID is empty for global data.
type AccountData struct {
	RoomID    string
	Type      string
	Content   string
	StreamPos int64
}

// SetAccountData stores an entry and returns its new stream position.
func (tx *Tx) SetAccountData(ctx context.Context, userID, roomID, dataType, content string) (int64, error) {
	pos, err := tx.nextStreamPos(ctx, "account_data")
	if err != nil {
		return 0, err
	}
	_, err = tx.exec(ctx, `
		INSERT INTO account_data (user_id, room_id, data_type, content, stream_pos) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET content = $4, stream_pos = $5`,
		userID, roomID, dataType, content, pos)
	if err != nil {
		return 0, fmt.Errorf("upsert account data %s: %w", dataType, err)
	}
	return pos, nil
}

// DeletedAccountData is the content of a deleted entry (MSC3391): the row stays, with a new
// stream position, so that incremental syncs can tell clients about the deletion.
const DeletedAccountData = "{}"

// AccountDataEntry returns one entry, or ErrNotFound (also for a deleted entry).
func (q *Q) AccountDataEntry(ctx context.Context, userID, roomID, dataType string) (string, error) {
	var content string
	err := q.queryRow(ctx, `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3`,
		userID, roomID, dataType).Scan(&content)
	if errors.Is(err, sql.ErrNoRows) || err == nil && content == DeletedAccountData {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("select account data: %w", err)
	}
	return content, nil
}

// AccountDataSince returns the entries of userID changed after since and at or before upTo.
// Deleted entries (content {}) are returned only to an incremental read (since > 0), which
// is how MSC3391 tells clients about a deletion.
func (q *Q) AccountDataSince(ctx context.Context, userID string, since, upTo int64) ([]AccountData, error) {
	rows, err := q.query(ctx, `
		SELECT room_id, data_type, content, stream_pos FROM account_data
		WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 AND ($2 > 0 OR content <> '{}')
		ORDER BY stream_pos`, userID, since, upTo)
	if err != nil {
		return nil, fmt.Errorf("select account data: %w", err)
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

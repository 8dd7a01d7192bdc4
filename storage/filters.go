package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// InsertFilter stores a filter and returns its ID.
func (tx *Tx) InsertFilter(ctx context.Context, userID, filterJSON string) (int64, error) {
	var id int64
	err := tx.queryRow(ctx, `INSERT INTO filters (user_id, filter_json) VALUES ($1, $2) RETURNING filter_id`, userID, filterJSON).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert filter: %w", err)
	}
	return id, nil
}

// Filter returns a stored filter of userID, or ErrNotFound.
func (q *Q) Filter(ctx context.Context, userID string, filterID int64) (string, error) {
	var js string
	err := q.queryRow(ctx, `SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2`, userID, filterID).Scan(&js)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("select filter: %w", err)
	}
	return js, nil
}

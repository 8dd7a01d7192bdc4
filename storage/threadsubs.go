package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ThreadSubscription is a user's subscription to a thread, or the trace of its end
// (Subscribed false). StreamPos is its place in the account data stream.
type ThreadSubscription struct {
	RoomID, ThreadRoot string
	Subscribed         bool
	Automatic          bool
	UnsubscribedAt     int64 // the event stream position when the user unsubscribed
	StreamPos          int64
}

// ThreadSubscription returns userID's row for a thread, or ErrNotFound.
func (q *Q) ThreadSubscription(ctx context.Context, userID, roomID, root string) (*ThreadSubscription, error) {
	s := ThreadSubscription{RoomID: roomID, ThreadRoot: root}
	var subscribed, automatic int64
	err := q.queryRow(ctx, `SELECT subscribed, automatic, unsubscribed_at, stream_pos FROM thread_subscriptions
		WHERE user_id = $1 AND room_id = $2 AND thread_root = $3`, userID, roomID, root).Scan(&subscribed, &automatic, &s.UnsubscribedAt, &s.StreamPos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select thread subscription %s: %w", root, err)
	}
	s.Subscribed, s.Automatic = subscribed == 1, automatic == 1
	return &s, nil
}

// SetThreadSubscription stores userID's subscription state of a thread with a new position
// in the account data stream, which it returns.
func (tx *Tx) SetThreadSubscription(ctx context.Context, userID string, s ThreadSubscription) (int64, error) {
	pos, err := tx.nextStreamPos(ctx, "account_data")
	if err != nil {
		return 0, err
	}
	_, err = tx.exec(ctx, `
		INSERT INTO thread_subscriptions (user_id, room_id, thread_root, subscribed, automatic, unsubscribed_at, stream_pos)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (user_id, room_id, thread_root) DO UPDATE
		SET subscribed = $4, automatic = $5, unsubscribed_at = $6, stream_pos = $7`,
		userID, s.RoomID, s.ThreadRoot, boolInt(s.Subscribed), boolInt(s.Automatic), s.UnsubscribedAt, pos)
	if err != nil {
		return 0, fmt.Errorf("upsert thread subscription %s: %w", s.ThreadRoot, err)
	}
	return pos, nil
}

// ThreadSubscriptionChanges returns userID's subscription changes with a stream position in
// (after, before), newest first, at most limit of them.
func (q *Q) ThreadSubscriptionChanges(ctx context.Context, userID string, after, before int64, limit int) ([]ThreadSubscription, error) {
	rows, err := q.query(ctx, `
		SELECT room_id, thread_root, subscribed, automatic, unsubscribed_at, stream_pos FROM thread_subscriptions
		WHERE user_id = $1 AND stream_pos > $2 AND stream_pos < $3 ORDER BY stream_pos DESC LIMIT $4`,
		userID, after, before, limit)
	if err != nil {
		return nil, fmt.Errorf("select thread subscription changes: %w", err)
	}
	defer rows.Close()
	var out []ThreadSubscription
	for rows.Next() {
		var s ThreadSubscription
		var subscribed, automatic int64
		if err := rows.Scan(&s.RoomID, &s.ThreadRoot, &subscribed, &automatic, &s.UnsubscribedAt, &s.StreamPos); err != nil {
			return nil, err
		}
		s.Subscribed, s.Automatic = subscribed == 1, automatic == 1
		out = append(out, s)
	}
	return out, rows.Err()
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// ThreadSubscribers returns the users subscribed to a thread.
func (q *Q) ThreadSubscribers(ctx context.Context, roomID, root string) (map[string]bool, error) {
	rows, err := q.query(ctx, `SELECT user_id FROM thread_subscriptions
		WHERE room_id = $1 AND thread_root = $2 AND subscribed = 1`, roomID, root)
	if err != nil {
		return nil, fmt.Errorf("select subscribers of thread %s: %w", root, err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out[u] = true
	}
	return out, rows.Err()
}

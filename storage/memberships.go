package storage

import (
	"context"
	"fmt"
)

// Membership is a user's current membership of a room.
type Membership struct {
	RoomNID    int64
	RoomID     string
	UserID     string
	Membership string
	EventNID   int64
	Forgotten  bool
}

// SetMembership records the user's current membership, changed by event eventNID.
func (tx *Tx) SetMembership(ctx context.Context, roomNID int64, userID, membership string, eventNID int64) error {
	tx.membershipsChanged = true
	_, err := tx.exec(ctx, `
		INSERT INTO memberships (room_nid, user_id, membership, event_nid, forgotten) VALUES ($1, $2, $3, $4, FALSE)
		ON CONFLICT (room_nid, user_id) DO UPDATE SET membership = $3, event_nid = $4, forgotten = FALSE`,
		roomNID, userID, membership, eventNID)
	if err != nil {
		return fmt.Errorf("upsert membership %s: %w", userID, err)
	}
	return nil
}

// ForgetRoom marks a left room forgotten for the user.
func (tx *Tx) ForgetRoom(ctx context.Context, roomNID int64, userID string) error {
	tx.membershipsChanged = true
	_, err := tx.exec(ctx, `UPDATE memberships SET forgotten = TRUE WHERE room_nid = $1 AND user_id = $2`, roomNID, userID)
	return err
}

func (q *Q) memberships(ctx context.Context, query string, args ...any) ([]Membership, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select memberships: %w", err)
	}
	defer rows.Close()
	var out []Membership
	for rows.Next() {
		var m Membership
		if err := rows.Scan(&m.RoomNID, &m.RoomID, &m.UserID, &m.Membership, &m.EventNID, &m.Forgotten); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

const membershipSelect = `SELECT m.room_nid, r.room_id, m.user_id, m.membership, m.event_nid, m.forgotten
	FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid `

// AllMemberships returns every membership of the user, as /sync reads it on each call: cached
// until a transaction writes memberships (do not modify the result).
func (db *DB) AllMemberships(ctx context.Context, userID string) ([]Membership, error) {
	ms, ok, gen, err := db.memberships.get(ctx, &db.Q, userID)
	if err != nil {
		return nil, err
	} else if ok {
		return ms, nil
	}
	ms, err = db.UserMemberships(ctx, userID, "")
	if err != nil {
		return nil, err
	}
	db.memberships.put(userID, ms, gen)
	return ms, nil
}

// UserMemberships returns the user's memberships, optionally only those in the given state.
func (q *Q) UserMemberships(ctx context.Context, userID, membership string) ([]Membership, error) {
	if membership != "" {
		return q.memberships(ctx, membershipSelect+`WHERE m.user_id = $1 AND m.membership = $2 ORDER BY m.room_nid`, userID, membership)
	}
	return q.memberships(ctx, membershipSelect+`WHERE m.user_id = $1 ORDER BY m.room_nid`, userID)
}

// RoomMembers returns the memberships of the room, optionally only those in the given state.
func (q *Q) RoomMembers(ctx context.Context, roomNID int64, membership string) ([]Membership, error) {
	if membership != "" {
		return q.memberships(ctx, membershipSelect+`WHERE m.room_nid = $1 AND m.membership = $2 ORDER BY m.user_id`, roomNID, membership)
	}
	return q.memberships(ctx, membershipSelect+`WHERE m.room_nid = $1 ORDER BY m.user_id`, roomNID)
}

// Membership returns the user's membership of the room ("" when none).
func (q *Q) Membership(ctx context.Context, roomNID int64, userID string) (string, error) {
	ms, err := q.memberships(ctx, membershipSelect+`WHERE m.room_nid = $1 AND m.user_id = $2`, roomNID, userID)
	if err != nil || len(ms) == 0 {
		return "", err
	}
	return ms[0].Membership, nil
}

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Presence is a user's presence as stored. StatusMsg "" is no message; LastActiveTS 0 means
// never active.
type Presence struct {
	UserID       string
	State        string // online, unavailable or offline
	StatusMsg    string
	LastActiveTS int64
	StreamPos    int64
}

const presenceColumns = `user_id, presence, status_msg, last_active_ts, stream_pos`

func scanPresence(row interface{ Scan(...any) error }) (*Presence, error) {
	var p Presence
	err := row.Scan(&p.UserID, &p.State, &p.StatusMsg, &p.LastActiveTS, &p.StreamPos)
	return &p, err
}

// SetPresence stores p (its StreamPos is ignored) and returns its new position in the presence
// stream.
func (tx *Tx) SetPresence(ctx context.Context, p Presence) (int64, error) {
	pos, err := tx.NextStreamPos(ctx, StreamPresence)
	if err != nil {
		return 0, err
	}
	_, err = tx.exec(ctx, `
		INSERT INTO presence (`+presenceColumns+`) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id) DO UPDATE SET presence = $2, status_msg = $3, last_active_ts = $4, stream_pos = $5`,
		p.UserID, p.State, p.StatusMsg, p.LastActiveTS, pos)
	if err != nil {
		return 0, fmt.Errorf("upsert presence %s: %w", p.UserID, err)
	}
	return pos, nil
}

// TouchPresence moves the last active time of userID without a new stream position: for a
// user already online and currently active, whom clients need not be told about.
func (tx *Tx) TouchPresence(ctx context.Context, userID string, ts int64) error {
	_, err := tx.exec(ctx, `UPDATE presence SET last_active_ts = $2 WHERE user_id = $1`, userID, ts)
	if err != nil {
		return fmt.Errorf("update presence %s: %w", userID, err)
	}
	return nil
}

// Presence returns the stored presence of userID, or ErrNotFound.
func (q *Q) Presence(ctx context.Context, userID string) (*Presence, error) {
	p, err := scanPresence(q.queryRow(ctx, `SELECT `+presenceColumns+` FROM presence WHERE user_id = $1`, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select presence %s: %w", userID, err)
	}
	return p, nil
}

// PresenceNotOffline returns every stored presence that is not offline, for re-arming the
// presence timers at start.
func (q *Q) PresenceNotOffline(ctx context.Context) ([]*Presence, error) {
	return q.presences(ctx, `SELECT `+presenceColumns+` FROM presence WHERE presence <> 'offline'`)
}

// PresenceSince returns the presence of userID and of the users who share a joined room with
// them, changed after since and at or before upTo, in stream order.
func (q *Q) PresenceSince(ctx context.Context, userID string, since, upTo int64) ([]*Presence, error) {
	return q.presences(ctx, `
		SELECT `+presenceColumns+` FROM presence p
		WHERE p.stream_pos > $2 AND p.stream_pos <= $3 AND (p.user_id = $1 OR EXISTS (
			SELECT 1 FROM memberships mine JOIN memberships theirs ON theirs.room_nid = mine.room_nid
			WHERE mine.user_id = $1 AND mine.membership = 'join'
				AND theirs.user_id = p.user_id AND theirs.membership = 'join'))
		ORDER BY p.stream_pos`, userID, since, upTo)
}

func (q *Q) presences(ctx context.Context, query string, args ...any) ([]*Presence, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select presence: %w", err)
	}
	defer rows.Close()
	var out []*Presence
	for rows.Next() {
		p, err := scanPresence(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// SharesRoom reports whether users a and b are both joined to some room.
func (q *Q) SharesRoom(ctx context.Context, a, b string) (bool, error) {
	var n int
	err := q.queryRow(ctx, `
		SELECT COUNT(*) FROM (SELECT 1 FROM memberships x JOIN memberships y ON y.room_nid = x.room_nid
		WHERE x.user_id = $1 AND x.membership = 'join' AND y.user_id = $2 AND y.membership = 'join'
		LIMIT 1) shared`, a, b).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("select shared room of %s and %s: %w", a, b, err)
	}
	return n > 0, nil
}

// RoomPeers returns the users joined to any room userID is joined to (userID among them when
// joined anywhere): those who see userID's presence.
func (q *Q) RoomPeers(ctx context.Context, userID string) ([]string, error) {
	return q.strings(ctx, `
		SELECT DISTINCT theirs.user_id FROM memberships mine JOIN memberships theirs ON theirs.room_nid = mine.room_nid
		WHERE mine.user_id = $1 AND mine.membership = 'join' AND theirs.membership = 'join'`, userID)
}

// StartedSharing returns the users other than userID who started sharing a joined room with
// userID through the membership changes in (fromPDU, toPDU] of the room event stream (their
// join into one of userID's rooms, or userID's join into a room of theirs) and share one now.
func (q *Q) StartedSharing(ctx context.Context, userID string, fromPDU, toPDU int64) ([]string, error) {
	joined, _, err := q.membershipChanges(ctx, userID, fromPDU, toPDU)
	if err != nil || len(joined) == 0 {
		return nil, err
	}
	sharing, err := q.sharingRoomWith(ctx, userID, sortedKeys(joined))
	if err != nil {
		return nil, err
	}
	delete(sharing, userID)
	return sortedKeys(sharing), nil
}

// PresenceOf returns the stored presence of those of users that have one, as of the presence
// stream position upTo: a presence stored later is left out (the next sync carries it).
func (q *Q) PresenceOf(ctx context.Context, users []string, upTo int64) ([]*Presence, error) {
	var out []*Presence
	const batch = 500
	for len(users) > 0 {
		n := min(len(users), batch)
		args := []any{upTo}
		for _, u := range users[:n] {
			args = append(args, u)
		}
		ps, err := q.presences(ctx, `SELECT `+presenceColumns+` FROM presence
			WHERE stream_pos <= $1 AND user_id IN (`+placeholders(2, n)+`) ORDER BY stream_pos`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
		users = users[n:]
	}
	return out, nil
}

package storage

import (
	"context"
	"fmt"
	"strings"
)

// PublicRoom is a room listed in the public room directory, with its joined member count.
type PublicRoom struct {
	NID           int64
	RoomID        string
	JoinedMembers int
}

// PublicRooms lists the rooms published in the directory, most joined members first, from
// offset on.
func (q *Q) PublicRooms(ctx context.Context, offset, limit int) ([]PublicRoom, int, error) {
	var total int
	if err := q.queryRow(ctx, `SELECT COUNT(*) FROM rooms WHERE visibility = 'public'`).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count public rooms: %w", err)
	}
	rows, err := q.query(ctx, `
		SELECT r.room_nid, r.room_id, (SELECT COUNT(*) FROM memberships m WHERE m.room_nid = r.room_nid AND m.membership = 'join') AS joined
		FROM rooms r WHERE r.visibility = 'public'
		ORDER BY joined DESC, r.room_nid ASC LIMIT $1 OFFSET $2`, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("select public rooms: %w", err)
	}
	defer rows.Close()
	var out []PublicRoom
	for rows.Next() {
		var p PublicRoom
		if err := rows.Scan(&p.NID, &p.RoomID, &p.JoinedMembers); err != nil {
			return nil, 0, err
		}
		out = append(out, p)
	}
	return out, total, rows.Err()
}

// DirectoryUser is a user-directory search result.
type DirectoryUser struct {
	UserID      string
	DisplayName string
	AvatarURL   string
}

// maxSearchTermBytes bounds the user-directory search term. User IDs have at most 255 bytes
// and local display names 256 (clientapi/profile.go), so a longer term, even with the few
// characters whose lower case is longer, matches nobody; and SQLite refuses LIKE patterns
// over 50,000 bytes ("LIKE or GLOB pattern too complex").
const maxSearchTermBytes = 1024

// SearchUsers finds local, active users whose ID or display name contains term, among those
// who share a room with searcher or are in a public room (all users when searchAll).
func (q *Q) SearchUsers(ctx context.Context, searcher, term string, searchAll bool, limit int) ([]DirectoryUser, error) {
	if len(term) > maxSearchTermBytes {
		return nil, nil
	}
	pattern := "%" + strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(strings.ToLower(term)) + "%"
	rows, err := q.query(ctx, `
		SELECT p.user_id, p.displayname, p.avatar_url FROM profiles p
		JOIN accounts a ON a.user_id = p.user_id AND NOT a.deactivated
		WHERE (LOWER(p.user_id) LIKE $1 ESCAPE '\' OR LOWER(p.displayname) LIKE $1 ESCAPE '\')
		AND ($3 OR p.user_id = $2
			OR p.user_id IN (SELECT m2.user_id FROM memberships m1 JOIN memberships m2 ON m2.room_nid = m1.room_nid
				WHERE m1.user_id = $2 AND m1.membership = 'join' AND m2.membership = 'join')
			OR p.user_id IN (SELECT m.user_id FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid
				WHERE r.visibility = 'public' AND m.membership = 'join'))
		ORDER BY p.user_id LIMIT $4`, pattern, searcher, searchAll, limit)
	if err != nil {
		return nil, fmt.Errorf("search users: %w", err)
	}
	defer rows.Close()
	var out []DirectoryUser
	for rows.Next() {
		var u DirectoryUser
		if err := rows.Scan(&u.UserID, &u.DisplayName, &u.AvatarURL); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// Report is a user's report of a room, an event or a user.
type Report struct {
	Reporter string
	RoomID   string
	EventID  string
	UserID   string
	Reason   string
	Score    *int64
	TS       int64
}

// InsertReport stores a report and returns its ID.
func (tx *Tx) InsertReport(ctx context.Context, r Report) (int64, error) {
	var id int64
	err := tx.queryRow(ctx, `INSERT INTO reports (reporter, room_id, event_id, user_id, reason, score, created_ts)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING report_id`, r.Reporter, r.RoomID, r.EventID, r.UserID, r.Reason, r.Score, r.TS).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert report: %w", err)
	}
	return id, nil
}

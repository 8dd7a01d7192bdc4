package storage

import (
	"context"
	"fmt"
)

// PurgedLeave is a user's last membership event of a room deleted with purge, in the client
// format it had for them (see migration 0028).
type PurgedLeave struct {
	UserID    string
	RoomID    string
	StreamPos int64
	EventJSON []byte
}

// InsertPurgedLeaves records the users' last membership events of a room being purged.
func (tx *Tx) InsertPurgedLeaves(ctx context.Context, leaves []PurgedLeave) error {
	tx.purgedLeavesAdded = tx.purgedLeavesAdded || len(leaves) > 0
	for _, l := range leaves {
		_, err := tx.exec(ctx, `INSERT INTO purged_room_leaves (user_id, room_id, stream_pos, event_json)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (user_id, room_id) DO UPDATE SET stream_pos = excluded.stream_pos, event_json = excluded.event_json`,
			l.UserID, l.RoomID, l.StreamPos, string(l.EventJSON))
		if err != nil {
			return fmt.Errorf("record the leave of %s from purged room %s: %w", l.UserID, l.RoomID, err)
		}
	}
	return nil
}

// PurgedLeaves returns the user's leaves of purged rooms at stream positions in (since, to].
func (q *Q) PurgedLeaves(ctx context.Context, userID string, since, to int64) ([]PurgedLeave, error) {
	rows, err := q.query(ctx, `SELECT room_id, stream_pos, event_json FROM purged_room_leaves
		WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3`, userID, since, to)
	if err != nil {
		return nil, fmt.Errorf("purged room leaves of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []PurgedLeave
	for rows.Next() {
		l := PurgedLeave{UserID: userID}
		var js string
		if err := rows.Scan(&l.RoomID, &l.StreamPos, &js); err != nil {
			return nil, err
		}
		l.EventJSON = []byte(js)
		out = append(out, l)
	}
	return out, rows.Err()
}

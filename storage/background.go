package storage

import (
	"context"
	"fmt"
)

// BackgroundJob is work the server does in the background, as the admin API's
// background_updates/status reports it: a purge of room history (by an admin or the
// retention job) or an admin room deletion, not finished.
type BackgroundJob struct {
	Kind      string // "purge_history" or "delete_room"
	ID        string // the purge_id or delete_id
	RoomID    string
	StartedTS int64
}

// RunningJobs lists the unfinished purges and room deletions, oldest first. With several
// server processes it lists those of every process (the rows are shared); a purge a stop cut
// short stays listed until it is resumed, a room deletion until it is failed at the next start.
func (q *Q) RunningJobs(ctx context.Context) ([]BackgroundJob, error) {
	rows, err := q.query(ctx, `
		SELECT 'purge_history', purge_id, room_id, created_ts FROM purge_history WHERE status = 'active'
		UNION ALL
		SELECT 'delete_room', delete_id, room_id, created_ts FROM room_deletes WHERE status IN ('scheduled', 'active')
		ORDER BY 4, 2`)
	if err != nil {
		return nil, fmt.Errorf("select running jobs: %w", err)
	}
	defer rows.Close()
	var out []BackgroundJob
	for rows.Next() {
		var j BackgroundJob
		if err := rows.Scan(&j.Kind, &j.ID, &j.RoomID, &j.StartedTS); err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

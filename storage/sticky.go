package storage

import (
	"context"
	"fmt"
)

// StickyEvent is a room event that is sticky (MSC4354) until ExpiresTS (Unix ms).
type StickyEvent struct {
	*Event
	ExpiresTS int64
}

// maxStickyMS is MSC4354's cap on a sticky duration: one hour.
const maxStickyMS = 3600000

// insertSticky records that the event ev, just inserted, is sticky until ev.StickyUntil, and
// forgets the room's sticky events that surely expired: ev's stickiness started at or before
// now and lasts at most an hour, so StickyUntil - 1h is not later than now.
func (tx *Tx) insertSticky(ctx context.Context, ev *Event) error {
	if _, err := tx.exec(ctx, `DELETE FROM sticky_events WHERE room_nid = $1 AND expires_ts <= $2`, ev.RoomNID, ev.StickyUntil-maxStickyMS); err != nil {
		return fmt.Errorf("delete expired sticky events: %w", err)
	}
	if _, err := tx.exec(ctx, `
		INSERT INTO sticky_events (event_nid, room_nid, expires_ts) VALUES ($1, $2, $3)
		ON CONFLICT (event_nid) DO NOTHING`, ev.NID, ev.RoomNID, ev.StickyUntil); err != nil {
		return fmt.Errorf("insert sticky event %s: %w", ev.EventID, err)
	}
	return nil
}

// StickyEvents returns up to limit events of the room with since < NID <= upTo that are
// still sticky at now (Unix ms), oldest first: shown to clients and not redacted (redaction
// removes the sticky key).
func (q *Q) StickyEvents(ctx context.Context, roomNID, since, upTo, now int64, limit int) ([]StickyEvent, error) {
	rows, err := q.query(ctx, `
		SELECT event_nid, expires_ts FROM sticky_events
		WHERE room_nid = $1 AND event_nid > $2 AND event_nid <= $3 AND expires_ts > $4
		ORDER BY event_nid LIMIT $5`, roomNID, since, upTo, now, limit)
	if err != nil {
		return nil, fmt.Errorf("select sticky events: %w", err)
	}
	defer rows.Close()
	expires := map[int64]int64{}
	var nids []int64
	for rows.Next() {
		var nid, exp int64
		if err := rows.Scan(&nid, &exp); err != nil {
			return nil, fmt.Errorf("scan sticky event: %w", err)
		}
		expires[nid] = exp
		nids = append(nids, nid)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	evs, err := q.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	out := make([]StickyEvent, 0, len(evs))
	for _, ev := range evs {
		if ev.Visible() && !ev.Hidden && ev.RedactedBy == "" {
			out = append(out, StickyEvent{Event: ev, ExpiresTS: expires[ev.NID]})
		}
	}
	return out, nil
}

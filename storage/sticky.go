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
	tx.stickyAdded = true
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

// StickyRef is a row of sticky_events: an event that is sticky until ExpiresTS (Unix ms).
type StickyRef struct {
	NID, RoomNID, ExpiresTS int64
}

// StickyEvents returns up to limit events of the room with since < NID <= upTo that are
// still sticky at now (Unix ms), oldest first (see StickyEventsOf).
func (q *Q) StickyEvents(ctx context.Context, roomNID, since, upTo, now int64, limit int) ([]StickyEvent, error) {
	refs, err := q.stickyRefs(ctx, `
		SELECT event_nid, room_nid, expires_ts FROM sticky_events
		WHERE room_nid = $1 AND event_nid > $2 AND event_nid <= $3 AND expires_ts > $4
		ORDER BY event_nid LIMIT $5`, roomNID, since, upTo, now, limit)
	if err != nil {
		return nil, err
	}
	return q.StickyEventsOf(ctx, refs)
}

// RoomsWithSticky returns the rooms with an event of NID <= upTo still sticky at now (Unix
// ms), for an initial sync to skip the others.
func (q *Q) RoomsWithSticky(ctx context.Context, upTo, now int64) (map[int64]bool, error) {
	rows, err := q.query(ctx, `SELECT DISTINCT room_nid FROM sticky_events WHERE event_nid <= $1 AND expires_ts > $2`, upTo, now)
	if err != nil {
		return nil, fmt.Errorf("rooms with sticky events: %w", err)
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var nid int64
		if err := rows.Scan(&nid); err != nil {
			return nil, err
		}
		out[nid] = true
	}
	return out, rows.Err()
}

// UnexpiredSticky returns the sticky events of every room with NID <= upTo that are still
// sticky at now, oldest first. An hour of sticky events at most: a short list.
func (q *Q) UnexpiredSticky(ctx context.Context, upTo, now int64) ([]StickyRef, error) {
	return q.stickyRefs(ctx, `
		SELECT event_nid, room_nid, expires_ts FROM sticky_events
		WHERE event_nid <= $1 AND expires_ts > $2
		ORDER BY event_nid`, upTo, now)
}

func (q *Q) stickyRefs(ctx context.Context, query string, args ...any) ([]StickyRef, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select sticky events: %w", err)
	}
	defer rows.Close()
	var out []StickyRef
	for rows.Next() {
		var r StickyRef
		if err := rows.Scan(&r.NID, &r.RoomNID, &r.ExpiresTS); err != nil {
			return nil, fmt.Errorf("scan sticky event: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// StickyEventsOf loads the events of refs, in stream order, leaving out those clients are not
// shown and the redacted ones (redaction removes the sticky key).
func (q *Q) StickyEventsOf(ctx context.Context, refs []StickyRef) ([]StickyEvent, error) {
	expires := make(map[int64]int64, len(refs))
	nids := make([]int64, 0, len(refs))
	for _, r := range refs {
		expires[r.NID] = r.ExpiresTS
		nids = append(nids, r.NID)
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

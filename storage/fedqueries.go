package storage

import (
	"context"
	"fmt"
	"strings"
)

// EventsByID returns the stored events with the given IDs, in no particular order; IDs this
// server does not know are left out.
func (q *Q) EventsByID(ctx context.Context, eventIDs []string) ([]*Event, error) {
	var out []*Event
	for start := 0; start < len(eventIDs); start += 500 {
		end := min(start+500, len(eventIDs))
		args := make([]any, 0, end-start)
		ph := make([]string, 0, end-start)
		for i, id := range eventIDs[start:end] {
			args = append(args, id)
			ph = append(ph, fmt.Sprintf("$%d", i+1))
		}
		evs, err := q.events(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id IN (`+strings.Join(ph, ",")+`)`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}

// RoomMembersOfServer returns the current memberships in the room of every user of server that
// ever had one (rows are kept after a leave), whatever the membership.
func (q *Q) RoomMembersOfServer(ctx context.Context, roomNID int64, server string) ([]Membership, error) {
	// LIKE narrows the rows with the index on room_nid; the exact suffix is checked here, as
	// LIKE is case-insensitive in SQLite and a longer domain can end the same way.
	pattern := "%:" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(server)
	ms, err := q.memberships(ctx, membershipSelect+`WHERE m.room_nid = $1 AND m.user_id LIKE $2 ESCAPE '\'`, roomNID, pattern)
	if err != nil {
		return nil, err
	}
	out := ms[:0]
	for _, m := range ms {
		if _, domain, ok := strings.Cut(m.UserID, ":"); ok && domain == server {
			out = append(out, m)
		}
	}
	return out, nil
}

package storage

import (
	"context"
	"fmt"
	"math"
	"strings"
)

// A message in a big room notifies most of its members with one and the same result: their
// push rules are the defaults and the event names none of them. That result is stored once
// per event (SharedPush, table event_push_shared) and covers every local member whose push
// span (table push_spans) includes the event, except the sender and the users evaluated apart
// (SharedPush.Apart). Spans follow who was joined and on the default rules: the roomserver
// opens and closes them at the events where that changes (SpanChange). Users with rules of
// their own, and those an event names, keep one event_push_actions row per notification.
// Every reader (unread counts, the badge, GET /notifications, the pusher, the purge) reads
// both through notificationsOf, so the two forms count the same.

// SharedPush is an event's notification of the members its shared result covers.
type SharedPush struct {
	RoomNID   int64
	EventNID  int64
	Sender    string
	ThreadID  string
	Highlight bool
	Actions   string
	TS        int64
	// Apart are the users a span covers at the event whose result was evaluated on its own
	// (the event mentions them or changes their membership).
	Apart []string
}

// SpanChange opens a user's push span in a room at an event (the span covers it), or closes
// the open one before it (the span does not cover it).
type SpanChange struct {
	UserID   string
	RoomNID  int64
	EventNID int64
	Open     bool
}

// openSpanEnd is push_spans.to_nid of an open span.
const openSpanEnd = math.MaxInt64

// InsertSharedPushes stores the shared notifications of a batch of events.
func (tx *Tx) InsertSharedPushes(ctx context.Context, pushes []SharedPush) error {
	for _, p := range pushes {
		if _, err := tx.exec(ctx, `
			INSERT INTO event_push_shared (room_nid, event_nid, sender, thread_id, highlight, actions, ts)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (room_nid, event_nid) DO NOTHING`,
			p.RoomNID, p.EventNID, p.Sender, p.ThreadID, p.Highlight, p.Actions, p.TS); err != nil {
			return fmt.Errorf("insert shared notification of event %d: %w", p.EventNID, err)
		}
		for _, u := range p.Apart {
			if _, err := tx.exec(ctx, `
				INSERT INTO event_push_apart (user_id, room_nid, event_nid) VALUES ($1, $2, $3)
				ON CONFLICT (user_id, room_nid, event_nid) DO NOTHING`, u, p.RoomNID, p.EventNID); err != nil {
				return fmt.Errorf("insert push exception of %s at event %d: %w", u, p.EventNID, err)
			}
		}
	}
	return nil
}

// ChangePushSpans applies span changes in order. Opening a span that is open, or closing one
// that is not, changes nothing.
func (tx *Tx) ChangePushSpans(ctx context.Context, changes []SpanChange) error {
	const chunk = 200
	var opens []SpanChange
	flush := func() error {
		if len(opens) == 0 {
			return nil
		}
		marks := make([]string, len(opens))
		args := make([]any, 0, 3*len(opens)+1)
		args = append(args, int64(openSpanEnd))
		for i, c := range opens {
			marks[i] = fmt.Sprintf("($%d, $%d, $%d, $1)", 3*i+2, 3*i+3, 3*i+4)
			args = append(args, c.UserID, c.RoomNID, c.EventNID)
		}
		_, err := tx.exec(ctx, `INSERT INTO push_spans (user_id, room_nid, from_nid, to_nid) VALUES `+
			strings.Join(marks, ", ")+` ON CONFLICT (user_id, room_nid, from_nid) DO NOTHING`, args...)
		opens = opens[:0]
		if err != nil {
			return fmt.Errorf("open push spans: %w", err)
		}
		return nil
	}
	for _, c := range changes {
		if c.Open {
			if opens = append(opens, c); len(opens) == chunk {
				if err := flush(); err != nil {
					return err
				}
			}
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		if _, err := tx.exec(ctx, `UPDATE push_spans SET to_nid = $3
			WHERE user_id = $1 AND room_nid = $2 AND to_nid = $4`,
			c.UserID, c.RoomNID, c.EventNID-1, int64(openSpanEnd)); err != nil {
			return fmt.Errorf("close push span of %s: %w", c.UserID, err)
		}
	}
	return flush()
}

// OpenPushSpans returns the users whose push span in the room is open.
func (q *Q) OpenPushSpans(ctx context.Context, roomNID int64) ([]string, error) {
	users, err := q.strings(ctx, `SELECT user_id FROM push_spans WHERE room_nid = $1 AND to_nid = $2`,
		roomNID, int64(openSpanEnd))
	if err != nil {
		return nil, fmt.Errorf("select open push spans of room %d: %w", roomNID, err)
	}
	return users, nil
}

// notificationsOf returns a subquery of the notifications (columns user_id, room_nid,
// event_nid, thread_id, highlight, actions, ts) that cond selects: a condition written with
// {u}, {r} and {e} for the user ID, room NID and event NID, applied to both the users' own
// rows and the shared rows their spans cover (inside each, so that both use their indexes).
// CROSS JOIN makes SQLite read the user's few spans first and then the shared rows in each by
// primary key; started from the shared rows, it would scan the room's spans for every row.
func notificationsOf(cond string) string {
	own := strings.NewReplacer("{u}", "n.user_id", "{r}", "n.room_nid", "{e}", "n.event_nid").Replace(cond)
	shared := strings.NewReplacer("{u}", "p.user_id", "{r}", "p.room_nid", "{e}", "s.event_nid").Replace(cond)
	return `(SELECT n.user_id, n.room_nid, n.event_nid, n.thread_id, n.highlight, n.actions, n.ts
		FROM event_push_actions n WHERE ` + own + `
		UNION ALL
		SELECT p.user_id, s.room_nid, s.event_nid, s.thread_id, s.highlight, s.actions, s.ts
		FROM push_spans p CROSS JOIN event_push_shared s
		WHERE ` + shared + ` AND s.room_nid = p.room_nid AND s.event_nid >= p.from_nid AND s.event_nid <= p.to_nid
			AND s.sender <> p.user_id AND NOT EXISTS (SELECT 1 FROM event_push_apart x
			WHERE x.user_id = p.user_id AND x.room_nid = s.room_nid AND x.event_nid = s.event_nid))`
}

// NotificationRows returns how many rows store notifications: users' own rows, shared rows,
// their exceptions and push spans. It measures what notifications cost to store.
func (q *Q) NotificationRows(ctx context.Context) (int64, error) {
	var n int64
	err := q.queryRow(ctx, `SELECT (SELECT COUNT(*) FROM event_push_actions) + (SELECT COUNT(*) FROM event_push_shared)
		+ (SELECT COUNT(*) FROM event_push_apart) + (SELECT COUNT(*) FROM push_spans)`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count notification rows: %w", err)
	}
	return n, nil
}

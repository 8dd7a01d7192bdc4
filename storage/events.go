package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"unsafe"
)

// Event is a stored room event. NID is also its position in the room event stream.
type Event struct {
	NID            int64
	EventID        string
	RoomNID        int64
	Type           string
	StateKeyNID    int64 // 0 for message events
	Sender         string
	Depth          int64
	OriginTS       int64
	StateBeforeNID int64
	ReplacesNID    int64  // the state event this one replaced, if any
	Hidden         bool   // not in the room event stream (see Status)
	Status         string // why: "" (timeline), or one of the Status constants
	RedactedBy     string
	TxnDevice      string
	TxnID          string
	JSON           []byte
	HasChildren    bool  // other events relate to this one
	RoomStateNID   int64 // the room's current state once the event was committed (0: unknown)
	// StickyUntil, when set on insert, is when the event stops being sticky (MSC4354, Unix ms);
	// InsertEvent records it so that /sync can find the room's sticky events. Not read back.
	StickyUntil int64
}

// The statuses of events that are not plain timeline events (migration 0013 explains them).
const (
	StatusBackfilled = "backfilled"
	StatusOutlier    = "outlier"
	StatusSoftFailed = "soft_failed"
	StatusRejected   = "rejected"
)

// Visible reports whether clients may be shown the event (in /sync, /messages, /context...):
// timeline events and accepted history fetched by backfill.
func (e *Event) Visible() bool { return e.Status == "" || e.Status == StatusBackfilled }

// InDAG reports whether the event is accepted room history (timeline or backfilled), whose
// state_before_nid is the state before it.
func (e *Event) InDAG() bool { return e.Visible() || e.Status == StatusSoftFailed }

// IsState reports whether the event is a state event.
func (e *Event) IsState() bool { return e.StateKeyNID != 0 }

const eventColumns = `event_nid, event_id, room_nid, event_type, state_key_nid, sender, depth, origin_ts,
	state_before_nid, replaces_nid, hidden, redacted_by, txn_device, txn_id, event_json, has_children, status, room_state_nid`

func scanEvent(row interface{ Scan(...any) error }) (*Event, error) {
	var e Event
	var js string
	err := row.Scan(&e.NID, &e.EventID, &e.RoomNID, &e.Type, &e.StateKeyNID, &e.Sender, &e.Depth, &e.OriginTS,
		&e.StateBeforeNID, &e.ReplacesNID, &e.Hidden, &e.RedactedBy, &e.TxnDevice, &e.TxnID, &js, &e.HasChildren, &e.Status, &e.RoomStateNID)
	// The string the driver returned is a copy of its own and referenced nowhere else: its
	// bytes become the event's JSON without a second copy (an initial sync reads megabytes of
	// events). Event.JSON must therefore never be written to; nothing does.
	e.JSON = unsafe.Slice(unsafe.StringData(js), len(js))
	return &e, err
}

func (q *Q) events(ctx context.Context, query string, args ...any) ([]*Event, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select events: %w", err)
	}
	defer rows.Close()
	var out []*Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("scan event: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// LockEventStream makes the transaction the only one adding room events until it ends.
// Call it before InsertEvent.
func (tx *Tx) LockEventStream(ctx context.Context) error {
	if tx.dialect.lockEventStream == "" {
		return nil
	}
	if _, err := tx.exec(ctx, tx.dialect.lockEventStream); err != nil {
		return fmt.Errorf("lock event stream: %w", err)
	}
	return nil
}

// InsertEvent stores ev and returns its NID; ErrConflict if the event ID exists.
func (tx *Tx) InsertEvent(ctx context.Context, ev *Event) (int64, error) {
	err := tx.queryRow(ctx, `
		INSERT INTO events (event_id, room_nid, event_type, state_key_nid, sender, depth, origin_ts,
			state_before_nid, replaces_nid, hidden, redacted_by, txn_device, txn_id, event_json, status, room_state_nid)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
		ON CONFLICT (event_id) DO NOTHING
		RETURNING event_nid`,
		ev.EventID, ev.RoomNID, ev.Type, ev.StateKeyNID, ev.Sender, ev.Depth, ev.OriginTS,
		ev.StateBeforeNID, ev.ReplacesNID, ev.Status != "", ev.RedactedBy, ev.TxnDevice, ev.TxnID, string(ev.JSON), ev.Status, ev.RoomStateNID,
	).Scan(&ev.NID)
	// ON CONFLICT DO NOTHING returns no row for a known event ID and, unlike a failed
	// INSERT, leaves a PostgreSQL transaction usable.
	if errors.Is(err, sql.ErrNoRows) || tx.dialect.isUniqueViolation(err) {
		return 0, ErrConflict
	} else if err != nil {
		return 0, fmt.Errorf("insert event %s: %w", ev.EventID, err)
	}
	if ev.StickyUntil > 0 && ev.Status == "" {
		if err := tx.insertSticky(ctx, ev); err != nil {
			return 0, err
		}
	}
	if tx.obs != nil && tx.obs.Load() != nil {
		tx.senders = append(tx.senders, ev.Sender)
	}
	return ev.NID, nil
}

// SetStateBefore records the state before an event stored without it (an outlier).
func (tx *Tx) SetStateBefore(ctx context.Context, eventNID, snapshotNID int64) error {
	_, err := tx.exec(ctx, `UPDATE events SET state_before_nid = $2 WHERE event_nid = $1`, eventNID, snapshotNID)
	if err != nil {
		return fmt.Errorf("set state before event %d: %w", eventNID, err)
	}
	return nil
}

// SetRoomStateNID records the room's current state once the event was committed.
func (tx *Tx) SetRoomStateNID(ctx context.Context, eventNID, snapshotNID int64) error {
	_, err := tx.exec(ctx, `UPDATE events SET room_state_nid = $2 WHERE event_nid = $1`, eventNID, snapshotNID)
	if err != nil {
		return fmt.Errorf("set room state of event %d: %w", eventNID, err)
	}
	return nil
}

// LastRoomEvent returns the room's newest event of the stream at or before pos, or ErrNotFound.
func (q *Q) LastRoomEvent(ctx context.Context, roomNID, pos int64) (*Event, error) {
	ev, err := scanEvent(q.queryRow(ctx, `SELECT `+eventColumns+` FROM events
		WHERE room_nid = $1 AND event_nid <= $2 AND NOT hidden ORDER BY event_nid DESC LIMIT 1`, roomNID, pos))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return ev, err
}

// NextRoomEvent returns the room's oldest event of the stream after pos, or ErrNotFound.
func (q *Q) NextRoomEvent(ctx context.Context, roomNID, pos int64) (*Event, error) {
	ev, err := scanEvent(q.queryRow(ctx, `SELECT `+eventColumns+` FROM events
		WHERE room_nid = $1 AND event_nid > $2 AND NOT hidden ORDER BY event_nid ASC LIMIT 1`, roomNID, pos))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return ev, err
}

// HideOutOfRoomEvents turns the room's timeline events stored without state (the membership
// events of local users in a room this server was not in: invites, knocks, rejections) into
// outliers, once the server has joined the room and holds its state: the timeline starts
// with the join.
func (tx *Tx) HideOutOfRoomEvents(ctx context.Context, roomNID int64) error {
	_, err := tx.exec(ctx, `UPDATE events SET status = 'outlier', hidden = TRUE
		WHERE room_nid = $1 AND status = '' AND state_before_nid = 0 AND event_type <> 'm.room.create'`, roomNID)
	if err != nil {
		return fmt.Errorf("hide out-of-room events of room %d: %w", roomNID, err)
	}
	return nil
}

// PromoteOutlier makes an outlier an event of the room's DAG with the given status and state
// before it: it keeps its NID (its place in the room event stream).
func (tx *Tx) PromoteOutlier(ctx context.Context, eventNID int64, status string, stateBeforeNID, replacesNID int64) error {
	res, err := tx.exec(ctx, `UPDATE events SET status = $2, hidden = $3, state_before_nid = $4, replaces_nid = $5
		WHERE event_nid = $1 AND status = 'outlier'`, eventNID, status, status != "", stateBeforeNID, replacesNID)
	if err != nil {
		return fmt.Errorf("promote outlier %d: %w", eventNID, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("promote outlier %d: not an outlier", eventNID)
	}
	return nil
}

// SetEventStatus changes how an event is held (an outlier found to be history, say), with the
// state before it.
func (tx *Tx) SetEventStatus(ctx context.Context, eventNID int64, status string, stateBeforeNID int64) error {
	_, err := tx.exec(ctx, `UPDATE events SET status = $2, hidden = $3, state_before_nid = $4 WHERE event_nid = $1`,
		eventNID, status, status != "", stateBeforeNID)
	if err != nil {
		return fmt.Errorf("set status of event %d: %w", eventNID, err)
	}
	return nil
}

// RedactEvent replaces the stored JSON of eventID by its redacted form.
func (tx *Tx) RedactEvent(ctx context.Context, eventID, redactedBy string, redactedJSON []byte) error {
	_, err := tx.exec(ctx, `UPDATE events SET event_json = $2, redacted_by = $3 WHERE event_id = $1`,
		eventID, string(redactedJSON), redactedBy)
	if err != nil {
		return fmt.Errorf("redact event %s: %w", eventID, err)
	}
	return nil
}

// Event returns the event with the given ID, or ErrNotFound.
func (q *Q) Event(ctx context.Context, eventID string) (*Event, error) {
	ev, err := scanEvent(q.queryRow(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id = $1`, eventID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select event %s: %w", eventID, err)
	}
	return ev, nil
}

// EventsByNID returns the events with the given NIDs, in NID order.
func (q *Q) EventsByNID(ctx context.Context, nids []int64) ([]*Event, error) {
	if len(nids) == 0 {
		return nil, nil
	}
	list, arg := q.in("$1", nids)
	return q.events(ctx, `SELECT `+eventColumns+` FROM events WHERE event_nid IN (`+list+`) ORDER BY event_nid`, arg)
}

// RoomEventsAfter returns up to limit accepted events of the room with since < NID <= upTo,
// the latest ones, in stream order; more reports whether older ones in the range were left out.
func (q *Q) RoomEventsAfter(ctx context.Context, roomNID, since, upTo int64, limit int) (evs []*Event, more bool, err error) {
	evs, err = q.events(ctx, `SELECT `+eventColumns+` FROM events
		WHERE room_nid = $1 AND event_nid > $2 AND event_nid <= $3 AND NOT hidden
		ORDER BY event_nid DESC LIMIT $4`, roomNID, since, upTo, limit+1)
	if err != nil {
		return nil, false, err
	}
	if len(evs) > limit {
		more = true
		evs = evs[:limit]
	}
	reverse(evs)
	return evs, more, nil
}

// LatestRoomEventNID returns the newest accepted event NID of the room at or before upTo.
func (q *Q) LatestRoomEventNID(ctx context.Context, roomNID, upTo int64) (int64, error) {
	var nid sql.NullInt64
	err := q.queryRow(ctx, `SELECT MAX(event_nid) FROM events WHERE room_nid = $1 AND event_nid <= $2 AND NOT hidden`, roomNID, upTo).Scan(&nid)
	return nid.Int64, err
}

// StateEventsBetween returns the accepted state events of the room with since < NID < before.
func (q *Q) StateEventsBetween(ctx context.Context, roomNID, since, before int64) ([]*Event, error) {
	return q.events(ctx, `SELECT `+eventColumns+` FROM events
		WHERE room_nid = $1 AND event_nid > $2 AND event_nid < $3 AND state_key_nid <> 0 AND NOT hidden
		ORDER BY event_nid`, roomNID, since, before)
}

// MaxEventNID returns the newest position of the room event stream.
func (q *Q) MaxEventNID(ctx context.Context) (int64, error) {
	var nid sql.NullInt64
	err := q.queryRow(ctx, `SELECT MAX(event_nid) FROM events`).Scan(&nid)
	return nid.Int64, err
}

func reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// EventsNearTime returns up to limit accepted events of the room at or after ts (forwards) or
// at or before it (backwards), nearest first.
func (q *Q) EventsNearTime(ctx context.Context, roomNID, ts int64, forwards bool, limit int) ([]*Event, error) {
	if forwards {
		return q.events(ctx, `SELECT `+eventColumns+` FROM events
			WHERE room_nid = $1 AND origin_ts >= $2 AND (NOT hidden OR status = 'backfilled')
			ORDER BY origin_ts ASC, event_nid ASC LIMIT $3`, roomNID, ts, limit)
	}
	return q.events(ctx, `SELECT `+eventColumns+` FROM events
		WHERE room_nid = $1 AND origin_ts <= $2 AND (NOT hidden OR status = 'backfilled')
		ORDER BY origin_ts DESC, event_nid DESC LIMIT $3`, roomNID, ts, limit)
}

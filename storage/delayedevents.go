package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Statuses of a delayed event (MSC4140). A scheduled event is claimed (sending) before it is
// sent and finalised (sent, cancelled or error) after.
const (
	DelayedScheduled = "scheduled"
	DelayedSending   = "sending"
	DelayedSent      = "sent"
	DelayedCancelled = "cancelled"
	DelayedError     = "error"
)

// DelayedEvent is an event a user scheduled to be sent later (MSC4140).
type DelayedEvent struct {
	DelayID      string
	UserID       string
	DeviceID     string
	RoomID       string
	Type         string
	StateKey     *string // nil for a message event
	Content      json.RawMessage
	DelayMS      int64
	RunningSince int64 // when it was scheduled or last restarted (Unix ms)
	SendTS       int64 // RunningSince + DelayMS
	Status       string
	Reason       string          // why it was finalised: action or delay
	EventID      string          // the event it became, once sent
	Error        json.RawMessage // the Matrix error that cancelled it, if any
	FinalisedTS  int64
	TxnID        string // of the scheduling request, if it had one
	StickyMS     *int64 // the sticky duration (MSC4354) of the event it becomes, if any
}

const delayedColumns = `delay_id, user_id, device_id, room_id, event_type, state_key, content, delay_ms,
	running_since, send_ts, status, reason, event_id, error, finalised_ts, sticky_ms`

func scanDelayed(row interface{ Scan(...any) error }) (*DelayedEvent, error) {
	var d DelayedEvent
	var sk sql.NullString
	var content, errJSON string
	var sticky sql.NullInt64
	if err := row.Scan(&d.DelayID, &d.UserID, &d.DeviceID, &d.RoomID, &d.Type, &sk, &content, &d.DelayMS,
		&d.RunningSince, &d.SendTS, &d.Status, &d.Reason, &d.EventID, &errJSON, &d.FinalisedTS, &sticky); err != nil {
		return nil, err
	}
	if sticky.Valid {
		d.StickyMS = &sticky.Int64
	}
	if sk.Valid {
		d.StateKey = &sk.String
	}
	d.Content = json.RawMessage(content)
	if errJSON != "" {
		d.Error = json.RawMessage(errJSON)
	}
	return &d, nil
}

// Finalised reports whether the delayed event was sent or cancelled.
func (d *DelayedEvent) Finalised() bool {
	return d.Status != DelayedScheduled && d.Status != DelayedSending
}

// InsertDelayedEvent schedules d unless its user already has maxPerUser delayed events
// scheduled (0: no limit); then it returns false and the send time of the user's next one.
// When the user's device already scheduled one with d's transaction ID, d.DelayID becomes
// that one's and nothing is inserted. Finalised delayed events of the user older than
// keepBefore (Unix ms) are deleted.
func (db *DB) InsertDelayedEvent(ctx context.Context, d *DelayedEvent, maxPerUser int, keepBefore int64) (ok bool, next int64, err error) {
	err = db.WithTx(ctx, func(tx *Tx) error {
		if d.TxnID != "" {
			var id string
			err := tx.queryRow(ctx, `SELECT delay_id FROM delayed_events WHERE user_id = $1 AND device_id = $2 AND txn_id = $3`,
				d.UserID, d.DeviceID, d.TxnID).Scan(&id)
			if err == nil {
				d.DelayID, ok = id, true
				return nil
			} else if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("select delayed event of txn %s: %w", d.TxnID, err)
			}
		}
		if maxPerUser > 0 {
			var n int
			var first sql.NullInt64
			if err := tx.queryRow(ctx, `SELECT COUNT(*), MIN(send_ts) FROM delayed_events
				WHERE user_id = $1 AND status IN ('scheduled', 'sending')`, d.UserID).Scan(&n, &first); err != nil {
				return fmt.Errorf("count delayed events of %s: %w", d.UserID, err)
			}
			if n >= maxPerUser {
				next = first.Int64
				return nil
			}
		}
		if _, err := tx.exec(ctx, `DELETE FROM delayed_events WHERE user_id = $1
			AND status IN ('sent', 'cancelled', 'error') AND finalised_ts < $2`, d.UserID, keepBefore); err != nil {
			return fmt.Errorf("delete old delayed events of %s: %w", d.UserID, err)
		}
		var sk any
		if d.StateKey != nil {
			sk = *d.StateKey
		}
		_, err := tx.exec(ctx, `INSERT INTO delayed_events (delay_id, user_id, device_id, room_id, event_type,
			state_key, content, delay_ms, running_since, send_ts, status, txn_id, sticky_ms)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'scheduled', $11, $12)`,
			d.DelayID, d.UserID, d.DeviceID, d.RoomID, d.Type, sk, string(d.Content), d.DelayMS, d.RunningSince, d.SendTS, d.TxnID, d.StickyMS)
		if err != nil {
			return fmt.Errorf("insert delayed event %s: %w", d.DelayID, err)
		}
		ok = true
		return nil
	})
	return ok, next, err
}

// DelayedEvent returns the delayed event with the given ID, or ErrNotFound.
func (q *Q) DelayedEvent(ctx context.Context, delayID string) (*DelayedEvent, error) {
	d, err := scanDelayed(q.queryRow(ctx, `SELECT `+delayedColumns+` FROM delayed_events WHERE delay_id = $1`, delayID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select delayed event %s: %w", delayID, err)
	}
	return d, nil
}

// DelayedFilter selects and orders a user's delayed events (MSC4140's list parameters).
// Empty fields select all.
type DelayedFilter struct {
	Status  string // scheduled or finalised
	RoomID  string
	Type    string
	Outcome string // send, cancel (by an action) or error (cancelled by an error)
	Reason  string // action or delay
	// OrderBy is send_ts (the default), origin_server_ts (when finalised, else send_ts) or
	// running_since; Backward reverses it.
	OrderBy  string
	Backward bool
}

// DelayedEventsOfUser returns a page of the user's delayed events that match f, in f's
// order, skipping the first offset.
func (q *Q) DelayedEventsOfUser(ctx context.Context, userID string, f DelayedFilter, offset, limit int) ([]*DelayedEvent, error) {
	where, args := `user_id = $1`, []any{userID}
	add := func(cond string, arg any) {
		args = append(args, arg)
		where += fmt.Sprintf(" AND "+cond, len(args))
	}
	switch f.Status {
	case "scheduled":
		where += ` AND status IN ('scheduled', 'sending')`
	case "finalised":
		where += ` AND status IN ('sent', 'cancelled', 'error')`
	}
	switch f.Outcome {
	case "send":
		where += ` AND status = 'sent'`
	case "cancel":
		where += ` AND status = 'cancelled' AND error = ''`
	case "error":
		where += ` AND (status = 'error' OR (status = 'cancelled' AND error <> ''))`
	}
	if f.RoomID != "" {
		add(`room_id = $%d`, f.RoomID)
	}
	if f.Type != "" {
		add(`event_type = $%d`, f.Type)
	}
	if f.Reason != "" {
		add(`reason = $%d`, f.Reason)
	}
	order := `send_ts`
	switch f.OrderBy {
	case "origin_server_ts":
		order = `CASE WHEN status IN ('sent', 'cancelled', 'error') THEN finalised_ts ELSE send_ts END`
	case "running_since":
		order = `running_since`
	}
	dir := ` ASC`
	if f.Backward {
		dir = ` DESC`
	}
	args = append(args, limit, offset)
	rows, err := q.query(ctx, `SELECT `+delayedColumns+` FROM delayed_events WHERE `+where+`
		ORDER BY `+order+dir+`, delay_id`+dir+fmt.Sprintf(` LIMIT $%d OFFSET $%d`, len(args)-1, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("select delayed events of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []*DelayedEvent
	for rows.Next() {
		d, err := scanDelayed(rows)
		if err != nil {
			return nil, fmt.Errorf("scan delayed event: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DelayedDue is a delayed event waiting for its time.
type DelayedDue struct {
	DelayID string
	SendTS  int64
}

// PendingDelayedEvents returns the delayed events not yet finalised that are due at or
// before before (Unix ms), for the scheduler's queue. A claimed one (sending) has SendTS 0:
// it is due at once.
func (q *Q) PendingDelayedEvents(ctx context.Context, before int64) ([]DelayedDue, error) {
	rows, err := q.query(ctx, `SELECT delay_id, CASE WHEN status = 'sending' THEN 0 ELSE send_ts END
		FROM delayed_events WHERE status IN ('scheduled', 'sending') AND send_ts <= $1`, before)
	if err != nil {
		return nil, fmt.Errorf("select pending delayed events: %w", err)
	}
	defer rows.Close()
	var out []DelayedDue
	for rows.Next() {
		var d DelayedDue
		if err := rows.Scan(&d.DelayID, &d.SendTS); err != nil {
			return nil, fmt.Errorf("scan delayed event: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// RestartDelayedEvent restarts a scheduled delayed event's timer at now and returns its new
// send time; ErrNotFound when no delayed event is scheduled with that ID.
func (db *DB) RestartDelayedEvent(ctx context.Context, delayID string, now int64) (int64, error) {
	var sendTS int64
	err := db.WithTx(ctx, func(tx *Tx) error {
		err := tx.queryRow(ctx, `UPDATE delayed_events SET running_since = $2, send_ts = $2 + delay_ms
			WHERE delay_id = $1 AND status = 'scheduled' RETURNING send_ts`, delayID, now).Scan(&sendTS)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return fmt.Errorf("restart delayed event %s: %w", delayID, err)
		}
		return nil
	})
	return sendTS, err
}

// CancelDelayedEvent cancels a scheduled delayed event; ErrNotFound when no delayed event is
// scheduled with that ID.
func (db *DB) CancelDelayedEvent(ctx context.Context, delayID string, now int64) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, `UPDATE delayed_events SET status = 'cancelled', reason = 'action', finalised_ts = $2
			WHERE delay_id = $1 AND status = 'scheduled'`, delayID, now)
		if err != nil {
			return fmt.Errorf("cancel delayed event %s: %w", delayID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// ClaimDelayedEvent marks a delayed event as being sent and returns it: one that is
// scheduled with a send time at or before dueBy (Unix ms), or one already claimed (a send
// that a crash interrupted, safe to repeat since its transaction ID makes the roomserver
// return the first event). ErrNotFound when there is no such delayed event.
func (db *DB) ClaimDelayedEvent(ctx context.Context, delayID string, dueBy int64) (*DelayedEvent, error) {
	var d *DelayedEvent
	err := db.WithTx(ctx, func(tx *Tx) error {
		var err error
		d, err = scanDelayed(tx.queryRow(ctx, `UPDATE delayed_events SET status = 'sending'
			WHERE delay_id = $1 AND (status = 'sending' OR (status = 'scheduled' AND send_ts <= $2))
			RETURNING `+delayedColumns, delayID, dueBy))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return fmt.Errorf("claim delayed event %s: %w", delayID, err)
		}
		return nil
	})
	return d, err
}

// FinishDelayedEvent finalises a claimed delayed event: status is sent (with its event ID)
// or error (with the Matrix error as JSON); reason is action or delay.
func (db *DB) FinishDelayedEvent(ctx context.Context, delayID, status, reason, eventID string, errJSON []byte, now int64) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `UPDATE delayed_events SET status = $2, reason = $3, event_id = $4, error = $5, finalised_ts = $6
			WHERE delay_id = $1 AND status = 'sending'`, delayID, status, reason, eventID, string(errJSON), now)
		if err != nil {
			return fmt.Errorf("finish delayed event %s: %w", delayID, err)
		}
		return nil
	})
}

// UnclaimDelayedEvent puts a claimed delayed event back in the schedule (the send action
// failed; MSC4140 keeps it scheduled so that it can be retried).
func (db *DB) UnclaimDelayedEvent(ctx context.Context, delayID string) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `UPDATE delayed_events SET status = 'scheduled' WHERE delay_id = $1 AND status = 'sending'`, delayID)
		if err != nil {
			return fmt.Errorf("unclaim delayed event %s: %w", delayID, err)
		}
		return nil
	})
}

// cancelledByState is the error of a delayed state event cancelled because another user set
// the same state first (MSC4140's unstable form of M_CANCELLED_BY_STATE_UPDATE).
const cancelledByState = `{"errcode":"M_UNKNOWN","org.matrix.msc4140.errcode":"M_CANCELLED_BY_STATE_UPDATE",` +
	`"error":"The delayed event was not sent because another user updated the same state."}`

// CancelDelayedStateBy cancels the scheduled delayed state events of (roomID, evType,
// stateKey) that were scheduled by users other than sender, who has just set that state
// (MSC4140: "Delayed state events are cancelled by a more recent state event"). It runs in
// the transaction that stores sender's event, so a delayed event is either cancelled or
// already claimed, never both.
func (tx *Tx) CancelDelayedStateBy(ctx context.Context, roomID, evType, stateKey, sender string, now int64) error {
	_, err := tx.exec(ctx, `UPDATE delayed_events SET status = 'cancelled', reason = 'error', error = $5, finalised_ts = $6
		WHERE room_id = $1 AND event_type = $2 AND state_key = $3 AND status = 'scheduled' AND user_id <> $4`,
		roomID, evType, stateKey, sender, cancelledByState, now)
	if err != nil {
		return fmt.Errorf("cancel delayed state events of %s: %w", roomID, err)
	}
	return nil
}

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// AppServiceState is what a service has been sent (migration 0024).
type AppServiceState struct {
	ServiceID   string
	StreamPos   int64 // every event up to here is in a transaction or of no interest
	LastTxnID   int64
	LastError   string
	LastErrorTS int64
	Pending     int64 // transactions built and not yet acknowledged
	PendingEvts int64 // their events
}

// AppServiceTxn is a transaction built for a service and not yet acknowledged.
type AppServiceTxn struct {
	TxnID     int64
	Body      []byte
	NumEvents int
}

// InitAppService gives a service seen for the first time its position: the newest event,
// so that a new registration does not receive the whole history. (WHERE TRUE: SQLite
// cannot parse ON CONFLICT after a SELECT without a WHERE.)
func (tx *Tx) InitAppService(ctx context.Context, serviceID string) error {
	_, err := tx.exec(ctx, `
		INSERT INTO appservice_positions (service_id, stream_pos)
		SELECT $1, COALESCE(MAX(event_nid), 0) FROM events WHERE TRUE
		ON CONFLICT (service_id) DO NOTHING`, serviceID)
	if err != nil {
		return fmt.Errorf("init appservice %s: %w", serviceID, err)
	}
	return nil
}

// AppServiceState returns the state of a service, or ErrNotFound before InitAppService.
func (q *Q) AppServiceState(ctx context.Context, serviceID string) (*AppServiceState, error) {
	st := AppServiceState{ServiceID: serviceID}
	err := q.queryRow(ctx, `
		SELECT p.stream_pos, p.last_txn_id, p.last_error, p.last_error_ts,
			(SELECT COUNT(*) FROM appservice_txns t WHERE t.service_id = p.service_id),
			(SELECT COALESCE(SUM(num_events), 0) FROM appservice_txns t WHERE t.service_id = p.service_id)
		FROM appservice_positions p WHERE p.service_id = $1`, serviceID,
	).Scan(&st.StreamPos, &st.LastTxnID, &st.LastError, &st.LastErrorTS, &st.Pending, &st.PendingEvts)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select appservice %s: %w", serviceID, err)
	}
	return &st, nil
}

// FirstAppServiceTxn returns the oldest unacknowledged transaction of a service, or
// ErrNotFound.
func (q *Q) FirstAppServiceTxn(ctx context.Context, serviceID string) (*AppServiceTxn, error) {
	var t AppServiceTxn
	var body string
	err := q.queryRow(ctx, `
		SELECT txn_id, body, num_events FROM appservice_txns
		WHERE service_id = $1 ORDER BY txn_id LIMIT 1`, serviceID).Scan(&t.TxnID, &body, &t.NumEvents)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select appservice txn %s: %w", serviceID, err)
	}
	t.Body = []byte(body)
	return &t, nil
}

// AdvanceAppService moves a service's position to pos (which must be past the current
// one) and, when body is not nil, adds the next transaction, returning its ID. Both happen
// in tx, so an event is put into exactly one transaction.
func (tx *Tx) AdvanceAppService(ctx context.Context, serviceID string, from, pos int64, body []byte, numEvents int, now int64) (int64, error) {
	var txnID int64
	bump := 0
	if body != nil {
		bump = 1
	}
	err := tx.queryRow(ctx, `
		UPDATE appservice_positions SET stream_pos = $3, last_txn_id = last_txn_id + $4
		WHERE service_id = $1 AND stream_pos = $2
		RETURNING last_txn_id`, serviceID, from, pos, bump).Scan(&txnID)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrConflict // another writer moved it
	} else if err != nil {
		return 0, fmt.Errorf("advance appservice %s: %w", serviceID, err)
	}
	if body == nil {
		return 0, nil
	}
	_, err = tx.exec(ctx, `
		INSERT INTO appservice_txns (service_id, txn_id, body, num_events, created_ts)
		VALUES ($1, $2, $3, $4, $5)`, serviceID, txnID, string(body), numEvents, now)
	if err != nil {
		return 0, fmt.Errorf("insert appservice txn %s %d: %w", serviceID, txnID, err)
	}
	return txnID, nil
}

// AckAppServiceTxn removes an acknowledged transaction and clears the service's last error.
func (tx *Tx) AckAppServiceTxn(ctx context.Context, serviceID string, txnID int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM appservice_txns WHERE service_id = $1 AND txn_id = $2`, serviceID, txnID); err != nil {
		return fmt.Errorf("delete appservice txn %s %d: %w", serviceID, txnID, err)
	}
	if _, err := tx.exec(ctx, `UPDATE appservice_positions SET last_error = '' WHERE service_id = $1 AND last_error <> ''`, serviceID); err != nil {
		return fmt.Errorf("clear appservice error %s: %w", serviceID, err)
	}
	return nil
}

// SetAppServiceError records the last delivery error of a service.
func (tx *Tx) SetAppServiceError(ctx context.Context, serviceID, msg string, now int64) error {
	_, err := tx.exec(ctx, `UPDATE appservice_positions SET last_error = $2, last_error_ts = $3 WHERE service_id = $1`, serviceID, msg, now)
	if err != nil {
		return fmt.Errorf("set appservice error %s: %w", serviceID, err)
	}
	return nil
}

// StreamEventsAfter returns up to limit events of the room event stream after pos (every
// room, timeline events only: not outliers, rejected, soft-failed or backfilled ones), in
// stream order.
func (q *Q) StreamEventsAfter(ctx context.Context, pos int64, limit int) ([]*Event, error) {
	return q.events(ctx, `SELECT `+eventColumns+` FROM events
		WHERE event_nid > $1 AND NOT hidden AND status = ''
		ORDER BY event_nid LIMIT $2`, pos, limit)
}

// AllReceiptsSince returns up to limit receipts of every room after the receipts stream
// position since, in stream order, with their room IDs.
func (q *Q) AllReceiptsSince(ctx context.Context, since int64, limit int) ([]Receipt, []string, error) {
	rows, err := q.query(ctx, `
		SELECT r.room_nid, r.user_id, r.receipt_type, r.thread_id, r.event_id, r.event_nid, r.ts, r.stream_pos, rm.room_id
		FROM receipts r JOIN rooms rm ON rm.room_nid = r.room_nid
		WHERE r.stream_pos > $1 ORDER BY r.stream_pos LIMIT $2`, since, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("select receipts since %d: %w", since, err)
	}
	defer rows.Close()
	var out []Receipt
	var roomIDs []string
	for rows.Next() {
		var r Receipt
		var roomID string
		if err := rows.Scan(&r.RoomNID, &r.UserID, &r.Type, &r.ThreadID, &r.EventID, &r.EventNID, &r.TS, &r.StreamPos, &roomID); err != nil {
			return nil, nil, err
		}
		out = append(out, r)
		roomIDs = append(roomIDs, roomID)
	}
	return out, roomIDs, rows.Err()
}

// AllPresenceSince returns up to limit presence changes of every user after the presence
// stream position since, in stream order.
func (q *Q) AllPresenceSince(ctx context.Context, since int64, limit int) ([]*Presence, error) {
	return q.presences(ctx, `SELECT `+presenceColumns+` FROM presence
		WHERE stream_pos > $1 ORDER BY stream_pos LIMIT $2`, since, limit)
}

// SetAppServiceRoomVisibility publishes the room in (or removes it from) the room
// directory of a service's network.
func (tx *Tx) SetAppServiceRoomVisibility(ctx context.Context, serviceID, networkID string, roomNID int64, public bool) error {
	var err error
	if public {
		_, err = tx.exec(ctx, `INSERT INTO appservice_room_directory (service_id, network_id, room_nid) VALUES ($1, $2, $3)
			ON CONFLICT (service_id, network_id, room_nid) DO NOTHING`, serviceID, networkID, roomNID)
	} else {
		_, err = tx.exec(ctx, `DELETE FROM appservice_room_directory WHERE service_id = $1 AND network_id = $2 AND room_nid = $3`, serviceID, networkID, roomNID)
	}
	if err != nil {
		return fmt.Errorf("set appservice room visibility %s %s: %w", serviceID, networkID, err)
	}
	return nil
}

// NetworkPublicRooms is PublicRooms for the room directory of one service's network, or,
// with serviceID "", for the server's directory and every network's together.
func (q *Q) NetworkPublicRooms(ctx context.Context, serviceID, networkID string, offset, limit int) ([]PublicRoom, int, error) {
	where, args := `r.room_nid IN (SELECT room_nid FROM appservice_room_directory WHERE service_id = $1 AND network_id = $2)`, []any{serviceID, networkID}
	if serviceID == "" {
		where, args = `(r.visibility = 'public' OR r.room_nid IN (SELECT room_nid FROM appservice_room_directory))`, nil
	}
	var total int
	if err := q.queryRow(ctx, `SELECT COUNT(*) FROM rooms r WHERE `+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count network public rooms: %w", err)
	}
	n := len(args)
	rows, err := q.query(ctx, `
		SELECT r.room_nid, r.room_id, (SELECT COUNT(*) FROM memberships m WHERE m.room_nid = r.room_nid AND m.membership = 'join') AS joined
		FROM rooms r WHERE `+where+`
		ORDER BY joined DESC, r.room_nid ASC LIMIT $`+strconv.Itoa(n+1)+` OFFSET $`+strconv.Itoa(n+2), append(args, limit, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("select network public rooms: %w", err)
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

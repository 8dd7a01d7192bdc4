package storage

import (
	"context"
	"fmt"
)

// AppServiceStreams are a service's positions in the to_device and device_lists streams
// (migration 0027).
type AppServiceStreams struct {
	ToDevice, DeviceLists int64
}

// StartAppServiceStreams gives a service its positions in the to_device and device_lists
// streams when it has none yet (-1): the current ones, so that a service does not receive
// what was sent before it asked for it.
func (tx *Tx) StartAppServiceStreams(ctx context.Context, serviceID string) error {
	_, err := tx.exec(ctx, `
		UPDATE appservice_positions SET
			to_device_pos = CASE WHEN to_device_pos < 0 THEN (SELECT pos FROM streams WHERE name = 'to_device') ELSE to_device_pos END,
			device_lists_pos = CASE WHEN device_lists_pos < 0 THEN (SELECT pos FROM streams WHERE name = 'device_lists') ELSE device_lists_pos END
		WHERE service_id = $1 AND (to_device_pos < 0 OR device_lists_pos < 0)`, serviceID)
	if err != nil {
		return fmt.Errorf("start appservice streams %s: %w", serviceID, err)
	}
	return nil
}

// AppServiceStreamPositions returns a service's positions in the to_device and device_lists
// streams.
func (q *Q) AppServiceStreamPositions(ctx context.Context, serviceID string) (AppServiceStreams, error) {
	var s AppServiceStreams
	err := q.queryRow(ctx, `SELECT to_device_pos, device_lists_pos FROM appservice_positions WHERE service_id = $1`,
		serviceID).Scan(&s.ToDevice, &s.DeviceLists)
	if err != nil {
		return s, fmt.Errorf("select appservice streams %s: %w", serviceID, err)
	}
	return s, nil
}

// SetAppServiceStreams moves a service's positions in the to_device and device_lists streams
// from from to to; ErrConflict when another writer moved them. Call it in the transaction
// that stores what they cover.
func (tx *Tx) SetAppServiceStreams(ctx context.Context, serviceID string, from, to AppServiceStreams) error {
	if from == to {
		return nil
	}
	res, err := tx.exec(ctx, `
		UPDATE appservice_positions SET to_device_pos = $4, device_lists_pos = $5
		WHERE service_id = $1 AND to_device_pos = $2 AND device_lists_pos = $3`,
		serviceID, from.ToDevice, from.DeviceLists, to.ToDevice, to.DeviceLists)
	if err != nil {
		return fmt.Errorf("advance appservice streams %s: %w", serviceID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrConflict
	}
	return nil
}

// ToDeviceMessagesAfter returns the to-device messages of every device after the position,
// in stream order, whole positions of at most about limit messages, and the position they
// reach (after itself when there are none).
func (q *Q) ToDeviceMessagesAfter(ctx context.Context, after int64, limit int) ([]ToDeviceMessage, int64, error) {
	// The last position of the first limit messages; a position is read whole.
	var upTo int64
	err := q.queryRow(ctx, `
		SELECT COALESCE(MAX(stream_pos), $1) FROM (SELECT stream_pos FROM to_device_messages
		WHERE stream_pos > $1 ORDER BY stream_pos LIMIT $2) t`, after, limit).Scan(&upTo)
	if err != nil {
		return nil, after, fmt.Errorf("select to-device positions: %w", err)
	}
	if upTo <= after {
		return nil, after, nil
	}
	rows, err := q.query(ctx, `
		SELECT user_id, device_id, stream_pos, sender, event_type, content FROM to_device_messages
		WHERE stream_pos > $1 AND stream_pos <= $2 ORDER BY stream_pos, user_id, device_id`, after, upTo)
	if err != nil {
		return nil, after, fmt.Errorf("select to-device messages: %w", err)
	}
	defer rows.Close()
	var out []ToDeviceMessage
	for rows.Next() {
		var m ToDeviceMessage
		if err := rows.Scan(&m.UserID, &m.DeviceID, &m.StreamPos, &m.Sender, &m.Type, &m.Content); err != nil {
			return nil, after, err
		}
		out = append(out, m)
	}
	return out, upTo, rows.Err()
}

// DeviceListChangesAfter returns the users whose devices or keys changed after the position
// (each user once, at their latest change), up to limit of them in stream order, and the
// position they reach (after itself when there are none).
func (q *Q) DeviceListChangesAfter(ctx context.Context, after int64, limit int) ([]string, int64, error) {
	rows, err := q.query(ctx, `
		SELECT user_id, stream_pos FROM device_list_changes WHERE stream_pos > $1
		ORDER BY stream_pos LIMIT $2`, after, limit)
	if err != nil {
		return nil, after, fmt.Errorf("select device list changes: %w", err)
	}
	defer rows.Close()
	var users []string
	pos := after
	for rows.Next() {
		var u string
		if err := rows.Scan(&u, &pos); err != nil {
			return nil, after, err
		}
		users = append(users, u)
	}
	return users, pos, rows.Err()
}

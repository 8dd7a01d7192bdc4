package storage

import (
	"context"
	"fmt"
)

// ToDeviceMessage is a send-to-device message waiting for its target device.
type ToDeviceMessage struct {
	UserID    string // target
	DeviceID  string // target
	StreamPos int64
	Sender    string
	Type      string
	Content   string // JSON object
}

// InsertToDeviceTxn records that the sender's device used txnID for /sendToDevice;
// ErrConflict when it already did, so that a retried request is not delivered twice.
func (tx *Tx) InsertToDeviceTxn(ctx context.Context, userID, deviceID, txnID string, ts int64) error {
	res, err := tx.exec(ctx, `
		INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, device_id, txn_id) DO NOTHING`, userID, deviceID, txnID, ts)
	if err != nil {
		return fmt.Errorf("insert to-device txn %s: %w", txnID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrConflict
	}
	return nil
}

// InsertToDeviceMessages queues msgs (their UserID, DeviceID, Sender, Type and Content) at
// one new to_device stream position, which it returns. A device may be the target of at most
// one of them.
func (tx *Tx) InsertToDeviceMessages(ctx context.Context, msgs []ToDeviceMessage) (int64, error) {
	pos, err := tx.NextStreamPos(ctx, StreamToDevice)
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		_, err := tx.exec(ctx, `
			INSERT INTO to_device_messages (user_id, device_id, stream_pos, sender, event_type, content)
			VALUES ($1, $2, $3, $4, $5, $6)`, m.UserID, m.DeviceID, pos, m.Sender, m.Type, m.Content)
		if err != nil {
			return 0, fmt.Errorf("insert to-device message for %s %s: %w", m.UserID, m.DeviceID, err)
		}
	}
	return pos, nil
}

// ToDeviceMessages returns up to limit messages of a device with positions in (after, upTo],
// oldest first.
func (q *Q) ToDeviceMessages(ctx context.Context, userID, deviceID string, after, upTo int64, limit int) ([]ToDeviceMessage, error) {
	rows, err := q.query(ctx, `
		SELECT stream_pos, sender, event_type, content FROM to_device_messages
		WHERE user_id = $1 AND device_id = $2 AND stream_pos > $3 AND stream_pos <= $4
		ORDER BY stream_pos LIMIT $5`, userID, deviceID, after, upTo, limit)
	if err != nil {
		return nil, fmt.Errorf("select to-device messages %s %s: %w", userID, deviceID, err)
	}
	defer rows.Close()
	var out []ToDeviceMessage
	for rows.Next() {
		m := ToDeviceMessage{UserID: userID, DeviceID: deviceID}
		if err := rows.Scan(&m.StreamPos, &m.Sender, &m.Type, &m.Content); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// HasToDeviceMessagesUpTo reports whether the device has messages at or before upTo, that
// is, messages an acknowledgement up to upTo would delete.
func (q *Q) HasToDeviceMessagesUpTo(ctx context.Context, userID, deviceID string, upTo int64) (bool, error) {
	var n int
	err := q.queryRow(ctx, `
		SELECT COUNT(*) FROM (SELECT 1 FROM to_device_messages
		WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3 LIMIT 1) t`, userID, deviceID, upTo).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("select to-device messages %s %s: %w", userID, deviceID, err)
	}
	return n > 0, nil
}

// DeleteToDeviceMessages deletes the device's messages at or before upTo: the device has
// acknowledged them by syncing with a since-token at or past their position.
func (tx *Tx) DeleteToDeviceMessages(ctx context.Context, userID, deviceID string, upTo int64) error {
	_, err := tx.exec(ctx, `DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3`,
		userID, deviceID, upTo)
	if err != nil {
		return fmt.Errorf("delete to-device messages %s %s: %w", userID, deviceID, err)
	}
	return nil
}

package storage

import (
	"context"
	"fmt"
)

// Stream names one of the sync streams. Each has one monotonic position; those kept in the
// database are rows of the streams table under these names.
type Stream string

// The sync streams. Room events use event NIDs as positions; typing is kept in memory only.
const (
	StreamPDU         Stream = "pdu"
	StreamAccountData Stream = "account_data"
	StreamReceipts    Stream = "receipts"
	StreamTyping      Stream = "typing"
	StreamToDevice    Stream = "to_device"
	StreamDeviceLists Stream = "device_lists"
	StreamPresence    Stream = "presence"
)

// NextStreamPos advances the named stream and returns its new position. The row stays locked
// until the transaction ends, so positions of one stream commit in order.
func (tx *Tx) NextStreamPos(ctx context.Context, s Stream) (int64, error) {
	return tx.nextStreamPos(ctx, string(s))
}

// StreamPositions returns the current position of every stream kept in the streams table.
func (q *Q) StreamPositions(ctx context.Context) (map[Stream]int64, error) {
	return q.positions(ctx, `SELECT name, pos FROM streams`)
}

// positions runs query, whose rows are (stream name, position).
func (q *Q) positions(ctx context.Context, query string) (map[Stream]int64, error) {
	rows, err := q.query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("select stream positions: %w", err)
	}
	defer rows.Close()
	out := map[Stream]int64{}
	for rows.Next() {
		var name string
		var pos int64
		if err := rows.Scan(&name, &pos); err != nil {
			return nil, err
		}
		out[Stream(name)] = pos
	}
	return out, rows.Err()
}

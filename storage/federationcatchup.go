package storage

import (
	"context"
	"fmt"
)

// CollapseFederationQueue keeps, of the PDUs waiting for destination (not in the transaction
// in flight), only the newest of each room, and returns how many it dropped. A destination
// that has been unreachable for long catches up from those: on receiving an event whose
// prev_events it lacks, it asks for the missing ones (get_missing_events) or the state
// (state_ids), so the queue of a server that is down for days does not grow without end.
func (db *DB) CollapseFederationQueue(ctx context.Context, destination string) (int64, error) {
	var n int64
	err := db.WithTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, `
			DELETE FROM federation_queue_pdus
			WHERE destination = $1 AND txn_id = ''
			AND queue_pos NOT IN (
				SELECT MAX(q.queue_pos) FROM federation_queue_pdus q JOIN events e ON e.event_nid = q.event_nid
				WHERE q.destination = $1 AND q.txn_id = ''
				GROUP BY e.room_nid)`, destination)
		if err != nil {
			return fmt.Errorf("collapse federation queue of %s: %w", destination, err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

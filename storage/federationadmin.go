package storage

import (
	"context"
	"fmt"
)

// FederationQueueStatus is one destination's share of the federation outbox, for the
// operator (`lattice federation-queue`).
type FederationQueueStatus struct {
	Destination string
	PDUs, EDUs  int // queued, the transaction in flight included
	FederationDestination
}

// FederationQueueStatuses returns, sorted by name, every destination with queued PDUs or
// EDUs or failed attempts in a row.
func (q *Q) FederationQueueStatuses(ctx context.Context) ([]FederationQueueStatus, error) {
	rows, err := q.query(ctx, `
		SELECT d.destination,
			(SELECT COUNT(*) FROM federation_queue_pdus p WHERE p.destination = d.destination),
			(SELECT COUNT(*) FROM federation_queue_edus e WHERE e.destination = d.destination),
			COALESCE(f.txn_id, ''), COALESCE(f.failures, 0), COALESCE(f.retry_ts, 0)
		FROM (
			SELECT destination FROM federation_queue_pdus
			UNION SELECT destination FROM federation_queue_edus
			UNION SELECT destination FROM federation_destinations WHERE failures > 0
		) d
		LEFT JOIN federation_destinations f ON f.destination = d.destination
		ORDER BY d.destination`)
	if err != nil {
		return nil, fmt.Errorf("select federation queue: %w", err)
	}
	defer rows.Close()
	var out []FederationQueueStatus
	for rows.Next() {
		var s FederationQueueStatus
		if err := rows.Scan(&s.Destination, &s.PDUs, &s.EDUs, &s.TxnID, &s.Failures, &s.RetryTS); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// ResetFederationBackoff clears the failures and retry time recorded for destination, so that
// the sender's next start of its worker sends at once; the transaction in flight stays, to be
// retried with the same ID and content. It returns ErrNotFound when nothing was ever sent to
// destination.
func (db *DB) ResetFederationBackoff(ctx context.Context, destination string) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, `UPDATE federation_destinations SET failures = 0, retry_ts = 0 WHERE destination = $1`, destination)
		if err != nil {
			return fmt.Errorf("reset backoff of %s: %w", destination, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// ResetAllFederationBackoffs clears the backoff of every destination in one, and returns how
// many had failed attempts recorded.
func (db *DB) ResetAllFederationBackoffs(ctx context.Context) (int64, error) {
	var n int64
	err := db.WithTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(ctx, `UPDATE federation_destinations SET failures = 0, retry_ts = 0 WHERE failures > 0 OR retry_ts > 0`)
		if err != nil {
			return fmt.Errorf("reset every federation backoff: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

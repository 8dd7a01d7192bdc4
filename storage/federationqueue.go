package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// FederationTxn is a batch of the federation outbox for one destination: the PDUs and EDUs
// of one transaction (PUT /_matrix/federation/v1/send/{txnId}), in queue order.
type FederationTxn struct {
	ID   string
	PDUs [][]byte // the events' JSON
	EDUs []FederationEDU
}

// FederationEDU is a queued EDU.
type FederationEDU struct {
	Type    string
	Content []byte // JSON
}

// FederationDestination is the sender's state for one destination server.
type FederationDestination struct {
	// TxnID is the transaction in flight, "" when none.
	TxnID string
	// Failures counts the failed attempts in a row; RetryTS (ms) is when the next attempt
	// may start.
	Failures int
	RetryTS  int64
}

// QueuePDU queues the event eventNID for each destination, in the caller's transaction, so
// that an event and its outbox rows commit together; the caller leaves out this server
// itself, and wakes the sender after the commit. An event already waiting for a destination
// is not queued twice.
func (tx *Tx) QueuePDU(ctx context.Context, eventNID int64, destinations []string) error {
	for _, dest := range destinations {
		_, err := tx.exec(ctx, `
			INSERT INTO federation_queue_pdus (destination, event_nid) VALUES ($1, $2)
			ON CONFLICT (destination, event_nid) DO NOTHING`, dest, eventNID)
		if err != nil {
			return fmt.Errorf("queue event %d for %s: %w", eventNID, dest, err)
		}
	}
	return nil
}

// QueueEDU queues an EDU for destination; content is its JSON content.
func (tx *Tx) QueueEDU(ctx context.Context, destination, eduType string, content []byte) error {
	_, err := tx.exec(ctx, `
		INSERT INTO federation_queue_edus (destination, edu_type, content) VALUES ($1, $2, $3)`,
		destination, eduType, string(content))
	if err != nil {
		return fmt.Errorf("queue %s EDU for %s: %w", eduType, destination, err)
	}
	return nil
}

// NextFederationTxn returns the transaction to send to destination. While one is in flight
// (neither FederationTxnSent nor anything else ended it) that same transaction is returned,
// with the same ID and rows, so that a retry, also after a restart, repeats it exactly.
// Otherwise the oldest waiting rows, up to maxPDUs and maxEDUs, become a new transaction
// with the ID newTxnID. ErrNotFound means nothing waits for destination.
func (db *DB) NextFederationTxn(ctx context.Context, destination string, maxPDUs, maxEDUs int, newTxnID string) (*FederationTxn, error) {
	var txn *FederationTxn
	err := db.WithTx(ctx, func(tx *Tx) error {
		var err error
		txn, err = tx.nextFederationTxn(ctx, destination, maxPDUs, maxEDUs, newTxnID)
		if errors.Is(err, ErrNotFound) {
			return nil // commit: an emptied transaction in flight was ended
		}
		return err
	})
	if err == nil && txn == nil {
		return nil, ErrNotFound
	}
	return txn, err
}

func (tx *Tx) nextFederationTxn(ctx context.Context, destination string, maxPDUs, maxEDUs int, newTxnID string) (*FederationTxn, error) {
	state, err := tx.FederationDestination(ctx, destination)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if state.TxnID != "" {
		txn, err := tx.federationTxn(ctx, destination, state.TxnID)
		if err != nil || len(txn.PDUs)+len(txn.EDUs) > 0 {
			return txn, err
		}
		// The rows of the transaction in flight are gone: start a new one.
	}
	var n int64
	for _, q := range []struct {
		table string
		limit int
	}{{"federation_queue_pdus", maxPDUs}, {"federation_queue_edus", maxEDUs}} {
		res, err := tx.exec(ctx, `
			UPDATE `+q.table+` SET txn_id = $1
			WHERE queue_pos IN (
				SELECT queue_pos FROM `+q.table+`
				WHERE destination = $2 AND txn_id = ''
				ORDER BY queue_pos LIMIT $3)`, newTxnID, destination, q.limit)
		if err != nil {
			return nil, fmt.Errorf("batch %s for %s: %w", q.table, destination, err)
		}
		rows, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("batch %s for %s: %w", q.table, destination, err)
		}
		n += rows
	}
	if n == 0 {
		if state.TxnID != "" {
			if err := tx.endFederationTxn(ctx, destination, state.TxnID); err != nil {
				return nil, err
			}
		}
		return nil, ErrNotFound
	}
	_, err = tx.exec(ctx, `
		INSERT INTO federation_destinations (destination, txn_id) VALUES ($1, $2)
		ON CONFLICT (destination) DO UPDATE SET txn_id = EXCLUDED.txn_id`, destination, newTxnID)
	if err != nil {
		return nil, fmt.Errorf("start transaction %s to %s: %w", newTxnID, destination, err)
	}
	return tx.federationTxn(ctx, destination, newTxnID)
}

// federationTxn reads the rows of the transaction txnID to destination in queue order. A
// PDU whose event is no longer stored is left out.
func (tx *Tx) federationTxn(ctx context.Context, destination, txnID string) (*FederationTxn, error) {
	txn := &FederationTxn{ID: txnID}
	rows, err := tx.query(ctx, `
		SELECT e.event_json FROM federation_queue_pdus q JOIN events e ON e.event_nid = q.event_nid
		WHERE q.destination = $1 AND q.txn_id = $2
		ORDER BY q.queue_pos`, destination, txnID)
	if err != nil {
		return nil, fmt.Errorf("select PDUs of transaction %s to %s: %w", txnID, destination, err)
	}
	defer rows.Close()
	for rows.Next() {
		var js string
		if err := rows.Scan(&js); err != nil {
			return nil, fmt.Errorf("scan PDU of transaction %s to %s: %w", txnID, destination, err)
		}
		txn.PDUs = append(txn.PDUs, []byte(js))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select PDUs of transaction %s to %s: %w", txnID, destination, err)
	}
	rows.Close()
	rows, err = tx.query(ctx, `
		SELECT edu_type, content FROM federation_queue_edus
		WHERE destination = $1 AND txn_id = $2
		ORDER BY queue_pos`, destination, txnID)
	if err != nil {
		return nil, fmt.Errorf("select EDUs of transaction %s to %s: %w", txnID, destination, err)
	}
	defer rows.Close()
	for rows.Next() {
		var edu FederationEDU
		var content string
		if err := rows.Scan(&edu.Type, &content); err != nil {
			return nil, fmt.Errorf("scan EDU of transaction %s to %s: %w", txnID, destination, err)
		}
		edu.Content = []byte(content)
		txn.EDUs = append(txn.EDUs, edu)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select EDUs of transaction %s to %s: %w", txnID, destination, err)
	}
	return txn, nil
}

// FederationTxnSent records that destination accepted the transaction txnID: its rows leave
// the queue and the destination's backoff is reset.
func (db *DB) FederationTxnSent(ctx context.Context, destination, txnID string) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		for _, table := range []string{"federation_queue_pdus", "federation_queue_edus"} {
			_, err := tx.exec(ctx, `DELETE FROM `+table+` WHERE destination = $1 AND txn_id = $2`, destination, txnID)
			if err != nil {
				return fmt.Errorf("delete sent rows of %s, transaction %s to %s: %w", table, txnID, destination, err)
			}
		}
		return tx.endFederationTxn(ctx, destination, txnID)
	})
}

// endFederationTxn clears the transaction in flight to destination and its backoff.
func (tx *Tx) endFederationTxn(ctx context.Context, destination, txnID string) error {
	_, err := tx.exec(ctx, `
		UPDATE federation_destinations SET txn_id = '', failures = 0, retry_ts = 0
		WHERE destination = $1 AND txn_id = $2`, destination, txnID)
	if err != nil {
		return fmt.Errorf("end transaction %s to %s: %w", txnID, destination, err)
	}
	return nil
}

// SetFederationBackoff records failures failed attempts in a row to reach destination and
// the time (ms) before which the next attempt must not start.
func (db *DB) SetFederationBackoff(ctx context.Context, destination string, failures int, retryTS int64) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(ctx, `
			INSERT INTO federation_destinations (destination, failures, retry_ts) VALUES ($1, $2, $3)
			ON CONFLICT (destination) DO UPDATE SET failures = EXCLUDED.failures, retry_ts = EXCLUDED.retry_ts`,
			destination, failures, retryTS)
		if err != nil {
			return fmt.Errorf("set backoff of %s: %w", destination, err)
		}
		return nil
	})
}

// FederationDestination returns the sender's state for destination, or ErrNotFound (with
// the zero state) when nothing was ever sent there.
func (q *Q) FederationDestination(ctx context.Context, destination string) (FederationDestination, error) {
	var d FederationDestination
	err := q.queryRow(ctx, `
		SELECT txn_id, failures, retry_ts FROM federation_destinations WHERE destination = $1`, destination,
	).Scan(&d.TxnID, &d.Failures, &d.RetryTS)
	if errors.Is(err, sql.ErrNoRows) {
		return FederationDestination{}, ErrNotFound
	} else if err != nil {
		return FederationDestination{}, fmt.Errorf("select federation destination %s: %w", destination, err)
	}
	return d, nil
}

// PendingFederationDestinations returns the destinations with queued PDUs or EDUs, sorted.
func (q *Q) PendingFederationDestinations(ctx context.Context) ([]string, error) {
	dests, err := q.strings(ctx, `
		SELECT destination FROM federation_queue_pdus
		UNION
		SELECT destination FROM federation_queue_edus
		ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("select pending federation destinations: %w", err)
	}
	return dests, nil
}

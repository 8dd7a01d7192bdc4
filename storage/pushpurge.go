package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// PurgeReadNotifications deletes the notifications (push actions) stored for events older
// than before (origin_server_ts, ms) that their user has already read, and returns how many
// it deleted. It works one user at a time and at most batch rows per write transaction, the
// rows found first on the reader pool, so that writers never wait long behind it.
//
// Only read notifications go: a notification is read when it is at or before its user's
// latest m.read or m.read.private receipt, unthreaded or in its thread, and receipts never
// move back (SetReceipt), so a deleted row would never have been counted again. The unread
// counts of /sync (UnreadCounts, UnreadRows) and the badge of push gateways (UnreadTotal)
// count only unread rows, so purging leaves every count unchanged, including those syncapi
// caches.
func (db *DB) PurgeReadNotifications(ctx context.Context, before int64, batch int) (int64, error) {
	var total int64
	user := ""
	for {
		// The next user with notifications: one seek in the (user_id, event_nid) index.
		var next sql.NullString
		err := db.queryRow(ctx, `SELECT MIN(user_id) FROM event_push_actions WHERE user_id > $1`, user).Scan(&next)
		if err != nil {
			return total, fmt.Errorf("select next user with notifications after %q: %w", user, err)
		}
		if !next.Valid {
			n, err := db.purgeSharedNotifications(ctx, before, batch)
			return total + n, err
		}
		user = next.String
		n, err := db.purgeUserNotifications(ctx, user, before, batch)
		total += n
		if err != nil {
			return total, err
		}
	}
}

// purgeUserNotifications deletes userID's read notifications older than before, batch rows
// per transaction, walking the user's rows in event order.
func (db *DB) purgeUserNotifications(ctx context.Context, userID string, before int64, batch int) (int64, error) {
	const purgeable = `a.user_id = $1 AND a.event_nid > $2 AND a.ts < $3 AND a.event_nid <= ` + readUpTo
	var total int64
	after := int64(0)
	for {
		nids, err := db.int64s(ctx, `SELECT a.event_nid FROM event_push_actions a WHERE `+purgeable+`
			ORDER BY a.event_nid LIMIT $4`, userID, after, before, batch)
		if err != nil {
			return total, fmt.Errorf("select read notifications of %s: %w", userID, err)
		}
		if len(nids) == 0 {
			return total, nil
		}
		upTo := nids[len(nids)-1]
		// The same conditions again, bounded to the batch's event range: a row read and old
		// stays so (receipts only move forward, ts never changes).
		err = db.WithTx(ctx, func(tx *Tx) error {
			res, err := tx.exec(ctx, `DELETE FROM event_push_actions WHERE (user_id, room_nid, event_nid) IN (
				SELECT a.user_id, a.room_nid, a.event_nid FROM event_push_actions a
				WHERE `+purgeable+` AND a.event_nid <= $4)`, userID, after, before, upTo)
			if err != nil {
				return fmt.Errorf("delete read notifications of %s up to event %d: %w", userID, upTo, err)
			}
			n, _ := res.RowsAffected()
			total += n
			return nil
		})
		if err != nil || len(nids) < batch {
			return total, err
		}
		after = upTo
	}
}

// purgeSharedNotifications deletes the shared notifications of events older than before
// that every user they cover has read, batch at a time: such a row would never count again.
func (db *DB) purgeSharedNotifications(ctx context.Context, before int64, batch int) (int64, error) {
	const unreadBySomeone = `EXISTS (SELECT 1 FROM push_spans p
		WHERE p.room_nid = s.room_nid AND s.event_nid >= p.from_nid AND s.event_nid <= p.to_nid
			AND p.user_id <> s.sender
			AND NOT EXISTS (SELECT 1 FROM event_push_apart x
				WHERE x.user_id = p.user_id AND x.room_nid = s.room_nid AND x.event_nid = s.event_nid)
			AND s.event_nid > (SELECT COALESCE(MAX(r.event_nid), 0) FROM receipts r
				WHERE r.room_nid = s.room_nid AND r.user_id = p.user_id
					AND r.receipt_type IN ('m.read', 'm.read.private')
					AND (r.thread_id = '' OR r.thread_id = s.thread_id)))`
	var total int64
	after := int64(0)
	for {
		nids, err := db.int64s(ctx, `SELECT s.event_nid FROM event_push_shared s
			WHERE s.event_nid > $1 AND s.ts < $2 AND NOT `+unreadBySomeone+`
			ORDER BY s.event_nid LIMIT $3`, after, before, batch)
		if err != nil {
			return total, fmt.Errorf("select read shared notifications: %w", err)
		}
		if len(nids) == 0 {
			return total, nil
		}
		upTo := nids[len(nids)-1]
		err = db.WithTx(ctx, func(tx *Tx) error {
			res, err := tx.exec(ctx, `DELETE FROM event_push_shared WHERE event_nid IN (
				SELECT s.event_nid FROM event_push_shared s
				WHERE s.event_nid > $1 AND s.event_nid <= $2 AND s.ts < $3 AND NOT `+unreadBySomeone+`)`,
				after, upTo, before)
			if err != nil {
				return fmt.Errorf("delete read shared notifications up to event %d: %w", upTo, err)
			}
			n, _ := res.RowsAffected()
			total += n
			_, err = tx.exec(ctx, `DELETE FROM event_push_apart WHERE event_nid > $1 AND event_nid <= $2
				AND NOT EXISTS (SELECT 1 FROM event_push_shared s
					WHERE s.room_nid = event_push_apart.room_nid AND s.event_nid = event_push_apart.event_nid)`, after, upTo)
			if err != nil {
				return fmt.Errorf("delete push exceptions up to event %d: %w", upTo, err)
			}
			return nil
		})
		if err != nil || len(nids) < batch {
			return total, err
		}
		after = upTo
	}
}

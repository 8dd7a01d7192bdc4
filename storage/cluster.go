package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// This file holds the PostgreSQL sessions that several server processes on one database
// coordinate through (package cluster): the lock that tells a lone server from a cluster
// member, LISTEN/NOTIFY, and the per-room input locks. They need connections that stay
// with one session, so they come from their own pool (side), opened on first use, which
// the queries of the main pool can never starve or be starved by.

// ErrServeLocked is returned by HoldServeLock when another server process holds the database
// in a way that excludes this one.
var ErrServeLocked = errors.New("another lattice process serves this database")

// serveLockKey is the advisory lock a serving process holds for as long as it runs: a lone
// server exclusively, a cluster member shared. 7345001 (lockEventStream) is the other key
// in this space; room keys are 64-bit hashes (roomLockKey).
const serveLockKey = 7345002

// migrateLockKey is the advisory lock migrations run under on PostgreSQL.
const migrateLockKey = 7345003

// ServeLockWait is how long a serving process should let HoldServeLock try: a process that
// died without closing its connection (its machine lost power) leaves its session, and the
// lock, until the database notices; the keep-alives set on the lock's session bound that to
// about half a minute.
const ServeLockWait = 60 * time.Second

// side returns the pool of session connections, opening it the first time.
func (db *DB) sidePool() (*sql.DB, error) {
	if db.dialect.name != "postgres" {
		return nil, errors.New("cluster coordination needs PostgreSQL")
	}
	db.sideOnce.Do(func() {
		db.side, db.sideErr = sql.Open("pgx", db.url)
		if db.sideErr == nil {
			db.side.SetMaxOpenConns(db.maxConns + 2) // the room locks, LISTEN and the serve lock
			db.side.SetMaxIdleConns(db.maxConns + 2)
		}
	})
	return db.side, db.sideErr
}

// HoldServeLock takes, on PostgreSQL, the lock that a serving process keeps until it ends or
// calls release: exclusive for a lone server, shared for a member of a cluster (shared true).
// It fails with ErrServeLocked when a lone server holds the database, or when cluster members
// do and this process is not one. The session ends with the process, even on SIGKILL, and the
// lock with it. On SQLite it does nothing (package cluster locks the file instead).
//
// A lock held by another session is tried again every second for wait (onWait, if set, is
// called once when the first try fails), so that a restart finds the lock of a process whose
// session the database has yet to drop.
func (db *DB) HoldServeLock(ctx context.Context, shared bool, wait time.Duration, onWait func()) (release func(), err error) {
	if db.dialect.name != "postgres" {
		return func() {}, nil
	}
	pool, err := db.sidePool()
	if err != nil {
		return nil, err
	}
	conn, err := pool.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("serve lock: %w", err)
	}
	fn := "pg_try_advisory_lock"
	if shared {
		fn = "pg_try_advisory_lock_shared"
	}
	// The database drops this session within about 25 s of the process's machine going
	// silent, rather than the system's default of two hours, so that a restart elsewhere
	// is not locked out (ignored over a Unix socket, where it is not needed).
	for _, set := range []string{`SET tcp_keepalives_idle = 10`, `SET tcp_keepalives_interval = 5`, `SET tcp_keepalives_count = 3`} {
		if _, err := conn.ExecContext(ctx, set); err != nil {
			conn.Close()
			return nil, fmt.Errorf("serve lock: %w", err)
		}
	}
	deadline := time.Now().Add(wait)
	for {
		var ok bool
		if err := conn.QueryRowContext(ctx, `SELECT `+fn+`($1)`, serveLockKey).Scan(&ok); err != nil {
			conn.Close()
			return nil, fmt.Errorf("serve lock: %w", err)
		}
		if ok {
			return func() { discard(conn) }, nil
		}
		if time.Now().After(deadline) {
			conn.Close()
			return nil, ErrServeLocked
		}
		if onWait != nil {
			onWait()
			onWait = nil
		}
		select {
		case <-ctx.Done():
			conn.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// discard closes conn's session rather than returning it to the pool, so that whatever
// session locks it holds go with it.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// Notify sends payload on the PostgreSQL notification channel, from a session connection.
func (db *DB) Notify(ctx context.Context, channel, payload string) error {
	pool, err := db.sidePool()
	if err != nil {
		return err
	}
	if _, err := pool.ExecContext(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
		return fmt.Errorf("notify %s: %w", channel, err)
	}
	return nil
}

// Listen LISTENs on channel on a connection of its own and calls ready once listening, then
// fn with the payload of each notification, in the order the notifying transactions
// committed, until ctx ends or the connection fails; it returns why it stopped.
func (db *DB) Listen(ctx context.Context, channel string, ready func(), fn func(payload string)) error {
	pool, err := db.sidePool()
	if err != nil {
		return err
	}
	conn, err := pool.Conn(ctx)
	if err != nil {
		return fmt.Errorf("listen %s: %w", channel, err)
	}
	defer discard(conn) // no session that listens goes back to the pool
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("listen: unexpected driver connection %T", dc)
		}
		pc := c.Conn()
		if _, err := pc.Exec(ctx, `LISTEN "`+channel+`"`); err != nil {
			return fmt.Errorf("listen %s: %w", channel, err)
		}
		ready()
		for {
			n, err := pc.WaitForNotification(ctx)
			if err != nil {
				return err
			}
			fn(n.Payload)
		}
	})
}

// RoomLock is a room's input lock held across processes (LockRoom).
type RoomLock struct {
	conn *sql.Conn
	key  int64
}

// roomLockKey is the advisory lock key of a room: a 64-bit hash of its ID.
func roomLockKey(roomID string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(roomID))
	return int64(h.Sum64())
}

// roomHead is the newest event NID of a room, whatever its status: it moves with every
// event any process stores in the room, so a process that finds it where it left it knows
// its in-memory view of the room is current.
const roomHead = `SELECT COALESCE(MAX(e.event_nid), 0) FROM events e JOIN rooms r ON r.room_nid = e.room_nid WHERE r.room_id = $1`

// LockRoom waits for the room's input lock, held across every process on the PostgreSQL
// database (a session advisory lock, so a process that dies lets it go), and returns it with
// the room's head as it is now that the lock is held: the newest event NID in the room (0
// for a room with no event or not stored). Only cluster members take it (package cluster).
func (db *DB) LockRoom(ctx context.Context, roomID string) (*RoomLock, int64, error) {
	pool, err := db.sidePool()
	if err != nil {
		return nil, 0, err
	}
	conn, err := pool.Conn(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("lock room %s: %w", roomID, err)
	}
	l := &RoomLock{conn: conn, key: roomLockKey(roomID)}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, l.key); err != nil {
		discard(conn)
		return nil, 0, fmt.Errorf("lock room %s: %w", roomID, err)
	}
	// A statement of its own: its snapshot is taken with the lock held, so it sees every
	// write of the process that held the lock before.
	var head int64
	if err := conn.QueryRowContext(ctx, roomHead, roomID).Scan(&head); err != nil {
		discard(conn)
		return nil, 0, fmt.Errorf("lock room %s: head: %w", roomID, err)
	}
	return l, head, nil
}

// Release lets the room's lock go and returns the room's head as it was just before, which
// is what the next holder will compare with. A failure ends the session (and so the lock).
func (l *RoomLock) Release(ctx context.Context, roomID string) (int64, error) {
	var head int64
	var unlocked bool
	// One statement: its snapshot is taken before the lock goes, so the head it reads
	// includes every write made under the lock and nothing of the next holder's.
	err := l.conn.QueryRowContext(ctx, `SELECT (`+roomHead+`), pg_advisory_unlock($2)`, roomID, l.key).Scan(&head, &unlocked)
	if err != nil || !unlocked {
		discard(l.conn)
		if err == nil {
			err = errors.New("lock was not held")
		}
		return 0, fmt.Errorf("unlock room %s: %w", roomID, err)
	}
	return head, l.conn.Close()
}

// sideState is the DB's session pool, opened on first use.
type sideState struct {
	url      string
	maxConns int
	sideOnce sync.Once
	side     *sql.DB
	sideErr  error
}

// SettledMaxEventNID returns the newest room event position, read while holding the lock
// under which room events take their NIDs (LockEventStream): no transaction holding a lower
// NID can still be in flight then, in this process or another, so every event up to the
// position returned is committed. A process starting beside others reads its first /sync
// position with it.
func (db *DB) SettledMaxEventNID(ctx context.Context) (int64, error) {
	var nid int64
	err := db.WithTx(ctx, func(tx *Tx) error {
		if err := tx.LockEventStream(ctx); err != nil {
			return err
		}
		return tx.queryRow(ctx, `SELECT COALESCE(MAX(event_nid), 0) FROM events`).Scan(&nid)
	})
	return nid, err
}

// RedactedSince returns the NIDs of the events of the room that redactions stored after the
// event NID after redact: the events whose parsed form another process's redactions have
// made stale in a cache of this one. It reads the index range of the room's newer events.
func (q *Q) RedactedSince(ctx context.Context, roomID string, after int64) ([]int64, error) {
	rows, err := q.query(ctx, `SELECT e.event_json FROM events e JOIN rooms r ON r.room_nid = e.room_nid
		WHERE r.room_id = $1 AND e.event_nid > $2 AND e.event_type = 'm.room.redaction'`, roomID, after)
	if err != nil {
		return nil, fmt.Errorf("select redactions of %s: %w", roomID, err)
	}
	var targets []any
	for rows.Next() {
		var js string
		if err := rows.Scan(&js); err != nil {
			rows.Close()
			return nil, err
		}
		var ev struct {
			Redacts string `json:"redacts"` // before room version 11
			Content struct {
				Redacts string `json:"redacts"`
			} `json:"content"`
		}
		if json.Unmarshal([]byte(js), &ev) != nil {
			continue
		}
		for _, id := range []string{ev.Redacts, ev.Content.Redacts} {
			if id != "" {
				targets = append(targets, id)
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(targets) == 0 {
		return nil, err
	}
	list, arg := q.textList(targets)
	rows, err = q.query(ctx, `SELECT event_nid FROM events WHERE event_id IN (`+list+`)`, arg...)
	if err != nil {
		return nil, fmt.Errorf("select redacted events of %s: %w", roomID, err)
	}
	defer rows.Close()
	var nids []int64
	for rows.Next() {
		var nid int64
		if err := rows.Scan(&nid); err != nil {
			return nil, err
		}
		nids = append(nids, nid)
	}
	return nids, rows.Err()
}

// textList returns the placeholders $1..$n for vals and the values.
func (q *Q) textList(vals []any) (string, []any) {
	ph := make([]string, len(vals))
	for i := range vals {
		ph[i] = fmt.Sprintf("$%d", i+1)
	}
	return strings.Join(ph, ", "), vals
}

// CommittedPositions returns every stream's newest position that is safe to read up to:
// the rows of the streams table, and for room events (StreamPDU) the newest visible event.
// Visible events take their NIDs only under LockEventStream, in commit order, so no visible
// event can still commit below that one; the events stored bare (outliers, rejected,
// backfilled) take NIDs without it but are hidden, and are not counted. A cluster process
// reads it when a client syncs, so that a write acknowledged by another process a moment ago
// is served even if its notification has not arrived yet.
func (q *Q) CommittedPositions(ctx context.Context) (map[Stream]int64, error) {
	return q.positions(ctx, `SELECT name, pos FROM streams WHERE name <> 'pdu'
		UNION ALL SELECT 'pdu', COALESCE(MAX(event_nid), 0) FROM events WHERE NOT hidden`)
}

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// StateKey is an event type and state key pair.
type StateKey struct {
	Type     string
	StateKey string
}

// StateKeyNID returns the numeric ID of (type, state key), creating it if needed.
func (tx *Tx) StateKeyNID(ctx context.Context, k StateKey) (int64, error) {
	var nid int64
	err := tx.queryRow(ctx, `
		INSERT INTO state_keys (event_type, state_key) VALUES ($1, $2)
		ON CONFLICT (event_type, state_key) DO UPDATE SET event_type = EXCLUDED.event_type
		RETURNING state_key_nid`, k.Type, k.StateKey).Scan(&nid)
	if err != nil {
		return 0, fmt.Errorf("state key nid %v: %w", k, err)
	}
	return nid, nil
}

// LookupStateKeyNID returns the numeric ID of (type, state key), or ErrNotFound.
func (q *Q) LookupStateKeyNID(ctx context.Context, k StateKey) (int64, error) {
	var nid int64
	err := q.queryRow(ctx, `SELECT state_key_nid FROM state_keys WHERE event_type = $1 AND state_key = $2`, k.Type, k.StateKey).Scan(&nid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return nid, err
}

// StateKeyByNID returns the (type, state key) pair of nid.
func (q *Q) StateKeyByNID(ctx context.Context, nid int64) (StateKey, error) {
	var k StateKey
	err := q.queryRow(ctx, `SELECT event_type, state_key FROM state_keys WHERE state_key_nid = $1`, nid).Scan(&k.Type, &k.StateKey)
	if errors.Is(err, sql.ErrNoRows) {
		return k, ErrNotFound
	}
	return k, err
}

// Snapshot is one state snapshot row with its own entries (not its parent's).
type Snapshot struct {
	NID      int64
	Parent   int64
	ChainLen int
	Entries  map[int64]int64 // state key NID -> event NID (0: removed)
}

// InsertSnapshot stores a snapshot and returns its NID.
func (tx *Tx) InsertSnapshot(ctx context.Context, roomNID int64, s Snapshot) (int64, error) {
	var nid int64
	err := tx.queryRow(ctx, `INSERT INTO state_snapshots (room_nid, parent_nid, chain_len) VALUES ($1, $2, $3) RETURNING snapshot_nid`,
		roomNID, s.Parent, s.ChainLen).Scan(&nid)
	if err != nil {
		return 0, fmt.Errorf("insert snapshot: %w", err)
	}
	for k, ev := range s.Entries {
		if _, err := tx.exec(ctx, `INSERT INTO state_snapshot_entries (snapshot_nid, state_key_nid, event_nid) VALUES ($1, $2, $3)`, nid, k, ev); err != nil {
			return 0, fmt.Errorf("insert snapshot entry: %w", err)
		}
	}
	return nid, nil
}

// Snapshot returns one snapshot row and its own entries, or ErrNotFound.
func (q *Q) Snapshot(ctx context.Context, nid int64) (*Snapshot, error) {
	s := Snapshot{NID: nid, Entries: make(map[int64]int64)}
	err := q.queryRow(ctx, `SELECT parent_nid, chain_len FROM state_snapshots WHERE snapshot_nid = $1`, nid).Scan(&s.Parent, &s.ChainLen)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select snapshot %d: %w", nid, err)
	}
	rows, err := q.query(ctx, `SELECT state_key_nid, event_nid FROM state_snapshot_entries WHERE snapshot_nid = $1`, nid)
	if err != nil {
		return nil, fmt.Errorf("select snapshot entries %d: %w", nid, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, ev int64
		if err := rows.Scan(&k, &ev); err != nil {
			return nil, err
		}
		s.Entries[k] = ev
	}
	return &s, rows.Err()
}

// SetCurrentState applies changes (state key NID -> event NID, 0 removes) to the room's
// current state.
func (tx *Tx) SetCurrentState(ctx context.Context, roomNID int64, changes map[int64]int64) error {
	for k, ev := range changes {
		var err error
		if ev == 0 {
			_, err = tx.exec(ctx, `DELETE FROM current_state WHERE room_nid = $1 AND state_key_nid = $2`, roomNID, k)
		} else {
			_, err = tx.exec(ctx, `
				INSERT INTO current_state (room_nid, state_key_nid, event_nid) VALUES ($1, $2, $3)
				ON CONFLICT (room_nid, state_key_nid) DO UPDATE SET event_nid = $3`, roomNID, k, ev)
		}
		if err != nil {
			return fmt.Errorf("update current state: %w", err)
		}
	}
	return nil
}

// CurrentStateEvents returns the room's current state events, optionally of one type only.
func (q *Q) CurrentStateEvents(ctx context.Context, roomNID int64, eventType string) ([]*Event, error) {
	if eventType != "" {
		return q.events(ctx, `SELECT `+prefixed("e", eventColumns)+` FROM current_state c
			JOIN events e ON e.event_nid = c.event_nid
			WHERE c.room_nid = $1 AND e.event_type = $2 ORDER BY e.event_nid`, roomNID, eventType)
	}
	return q.events(ctx, `SELECT `+prefixed("e", eventColumns)+` FROM current_state c
		JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = $1 ORDER BY e.event_nid`, roomNID)
}

// CurrentStateEvent returns one current state event of the room, or ErrNotFound.
func (q *Q) CurrentStateEvent(ctx context.Context, roomNID int64, k StateKey) (*Event, error) {
	ev, err := scanEvent(q.queryRow(ctx, `SELECT `+prefixed("e", eventColumns)+` FROM current_state c
		JOIN state_keys k ON k.state_key_nid = c.state_key_nid
		JOIN events e ON e.event_nid = c.event_nid
		WHERE c.room_nid = $1 AND k.event_type = $2 AND k.state_key = $3`, roomNID, k.Type, k.StateKey))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select current state %v: %w", k, err)
	}
	return ev, nil
}

func prefixed(alias, columns string) string {
	out := make([]byte, 0, len(columns)*2)
	out = append(out, alias...)
	out = append(out, '.')
	for i := 0; i < len(columns); i++ {
		c := columns[i]
		out = append(out, c)
		if c == ',' {
			for i+1 < len(columns) && (columns[i+1] == ' ' || columns[i+1] == '\n' || columns[i+1] == '\t') {
				i++
			}
			out = append(out, ' ')
			out = append(out, alias...)
			out = append(out, '.')
		}
	}
	return string(out)
}

// StateKeysByNID returns the (type, state key) pairs of nids; NIDs that do not exist are
// left out.
func (q *Q) StateKeysByNID(ctx context.Context, nids []int64) (map[int64]StateKey, error) {
	out := make(map[int64]StateKey, len(nids))
	if len(nids) == 0 {
		return out, nil
	}
	list, arg := q.in("$1", nids)
	rows, err := q.query(ctx, `SELECT state_key_nid, event_type, state_key FROM state_keys WHERE state_key_nid IN (`+list+`)`, arg)
	if err != nil {
		return nil, fmt.Errorf("select state keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var nid int64
		var k StateKey
		if err := rows.Scan(&nid, &k.Type, &k.StateKey); err != nil {
			return nil, err
		}
		out[nid] = k
	}
	return out, rows.Err()
}

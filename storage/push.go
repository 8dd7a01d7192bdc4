package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// PushAction is a notification: an event that a local user's push rules said notifies them.
// ThreadID is "main" for the main timeline, else the thread root's event ID; Actions is the
// matching rule's actions as JSON.
type PushAction struct {
	UserID    string
	RoomNID   int64
	EventNID  int64
	ThreadID  string
	Highlight bool
	Actions   string
	TS        int64
}

// ThreadMain is the thread ID of the main timeline, in receipts and notification counts.
const ThreadMain = "main"

// InsertPushActions stores the notifications of one or more events, many rows per statement
// (the users with rules of their own and those the events name; see SharedPush for the rest).
func (tx *Tx) InsertPushActions(ctx context.Context, acts []PushAction) error {
	if len(acts) == 0 {
		return nil
	}
	// The rows go in as one JSON array through a short statement: a multi-row VALUES list
	// is parsed again for every event, which cost a quarter of the server's time in a busy
	// room with a few dozen members.
	type row struct {
		U  string `json:"u"`
		R  int64  `json:"r"`
		E  int64  `json:"e"`
		T  string `json:"t"`
		H  bool   `json:"h"`
		A  string `json:"a"`
		TS int64  `json:"ts"`
	}
	rows := make([]row, len(acts))
	for i, a := range acts {
		rows[i] = row{U: a.UserID, R: a.RoomNID, E: a.EventNID, T: a.ThreadID, H: a.Highlight, A: a.Actions, TS: a.TS}
	}
	js, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	if _, err := tx.exec(ctx, tx.dialect.insertPushActions, string(js)); err != nil {
		return fmt.Errorf("insert push actions of event %d: %w", acts[0].EventNID, err)
	}
	return nil
}

// PushRulesEntry is a user's stored m.push_rules account data.
type PushRulesEntry struct {
	UserID    string
	Content   string
	StreamPos int64
}

// PushRulesChangedSince returns the m.push_rules entries stored after the account data stream
// position since, so that a cache of parsed rules can follow changes with one indexed query.
func (q *Q) PushRulesChangedSince(ctx context.Context, since int64) ([]PushRulesEntry, error) {
	return q.pushRulesEntries(ctx, `
		SELECT user_id, content, stream_pos FROM account_data
		WHERE data_type = 'm.push_rules' AND stream_pos > $1 AND room_id = ''
		ORDER BY stream_pos`, since)
}

// PushRulesOf returns the stored m.push_rules entries of the users that have one.
func (q *Q) PushRulesOf(ctx context.Context, userIDs []string) ([]PushRulesEntry, error) {
	var out []PushRulesEntry
	const chunk = 500
	for len(userIDs) > 0 {
		n := min(len(userIDs), chunk)
		args := make([]any, n)
		marks := make([]string, n)
		for i, u := range userIDs[:n] {
			args[i], marks[i] = u, fmt.Sprintf("$%d", i+1)
		}
		rows, err := q.pushRulesEntries(ctx, `
			SELECT user_id, content, stream_pos FROM account_data
			WHERE user_id IN (`+strings.Join(marks, ",")+`) AND room_id = '' AND data_type = 'm.push_rules'`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
		userIDs = userIDs[n:]
	}
	return out, nil
}

func (q *Q) pushRulesEntries(ctx context.Context, query string, args ...any) ([]PushRulesEntry, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select push rules: %w", err)
	}
	defer rows.Close()
	var out []PushRulesEntry
	for rows.Next() {
		var e PushRulesEntry
		if err := rows.Scan(&e.UserID, &e.Content, &e.StreamPos); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// readUpTo is the event NID up to which the user of push action row a has read the row's
// thread: the most recent of their m.read and m.read.private receipts, unthreaded or in the
// row's thread (client-server API, "Marking notifications as read").
const readUpTo = `(SELECT COALESCE(MAX(r.event_nid), 0) FROM receipts r
	WHERE r.room_nid = a.room_nid AND r.user_id = a.user_id
		AND r.receipt_type IN ('m.read', 'm.read.private') AND (r.thread_id = '' OR r.thread_id = a.thread_id))`

// UnreadCount is the number of unread notifications of a room or thread, and how many of
// them are highlighted.
type UnreadCount struct {
	Notifications int
	Highlights    int
}

// UnreadCounts returns the user's unread notifications in a room up to event NID upTo, by
// thread ID ("main" for the main timeline); threads without any are left out. A notification
// is read when it is at or before the user's latest unthreaded receipt or their latest
// receipt in its thread (read, from ReadPositions). Counting is a range scan of the primary
// key (user, room, event) after the unthreaded receipt, with a second scan only for the
// threads that have a receipt of their own further on.
func (q *Q) UnreadCounts(ctx context.Context, userID string, roomNID int64, read map[string]int64, upTo int64) (map[string]UnreadCount, error) {
	base := read[""]
	out, err := q.countUnread(ctx, `
		SELECT thread_id, COUNT(*), SUM(CASE WHEN highlight THEN 1 ELSE 0 END)
		FROM `+notificationsOf(`{u} = $1 AND {r} = $2 AND {e} > $3 AND {e} <= $4`)+` a
		GROUP BY thread_id`, userID, roomNID, base, upTo)
	if err != nil {
		return nil, err
	}
	for thread, pos := range read {
		if thread == "" || pos <= base {
			continue
		}
		if _, ok := out[thread]; !ok {
			continue
		}
		c, err := q.countUnread(ctx, `
			SELECT thread_id, COUNT(*), SUM(CASE WHEN highlight THEN 1 ELSE 0 END)
			FROM `+notificationsOf(`{u} = $1 AND {r} = $2 AND {e} > $3 AND {e} <= $4`)+` a
			WHERE thread_id = $5
			GROUP BY thread_id`, userID, roomNID, pos, upTo, thread)
		if err != nil {
			return nil, err
		}
		if n, ok := c[thread]; ok {
			out[thread] = n
		} else {
			delete(out, thread)
		}
	}
	return out, nil
}

// UnreadRow is one notification, for counting the few that arrived since a count.
type UnreadRow struct {
	ThreadID  string
	EventNID  int64
	Highlight bool
}

// UnreadRows returns the user's notifications in a room with event NIDs in (after, upTo].
// Every incremental /sync with new events runs it, so it is notificationsOf written out
// flat: compiling the statement is most of its cost on SQLite, and the subquery with the
// columns of notificationsOf made that several times the cost of the rows it finds.
func (q *Q) UnreadRows(ctx context.Context, userID string, roomNID, after, upTo int64) ([]UnreadRow, error) {
	rows, err := q.query(ctx, `SELECT n.thread_id, n.event_nid, n.highlight FROM event_push_actions n
		WHERE n.user_id = $1 AND n.room_nid = $2 AND n.event_nid > $3 AND n.event_nid <= $4
		UNION ALL
		SELECT s.thread_id, s.event_nid, s.highlight FROM push_spans p CROSS JOIN event_push_shared s
		WHERE p.user_id = $1 AND p.room_nid = $2 AND s.room_nid = $2 AND s.event_nid > $3 AND s.event_nid <= $4
			AND s.event_nid >= p.from_nid AND s.event_nid <= p.to_nid AND s.sender <> $1
			AND NOT EXISTS (SELECT 1 FROM event_push_apart x WHERE x.user_id = $1 AND x.room_nid = $2 AND x.event_nid = s.event_nid)`,
		userID, roomNID, after, upTo)
	if err != nil {
		return nil, fmt.Errorf("select notifications of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []UnreadRow
	for rows.Next() {
		var r UnreadRow
		if err := rows.Scan(&r.ThreadID, &r.EventNID, &r.Highlight); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ReadPositions returns the event NIDs up to which the user has read the room: by thread ID,
// "" for unthreaded receipts (m.read and m.read.private together).
func (q *Q) ReadPositions(ctx context.Context, userID string, roomNID int64) (map[string]int64, error) {
	rows, err := q.query(ctx, `SELECT thread_id, MAX(event_nid) FROM receipts
		WHERE room_nid = $1 AND user_id = $2 AND receipt_type IN ('m.read', 'm.read.private')
		GROUP BY thread_id`, roomNID, userID)
	if err != nil {
		return nil, fmt.Errorf("select read positions of %s: %w", userID, err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var thread string
		var pos int64
		if err := rows.Scan(&thread, &pos); err != nil {
			return nil, err
		}
		out[thread] = pos
	}
	return out, rows.Err()
}

func (q *Q) countUnread(ctx context.Context, query string, args ...any) (map[string]UnreadCount, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("count unread notifications: %w", err)
	}
	defer rows.Close()
	out := map[string]UnreadCount{}
	for rows.Next() {
		var thread string
		var c UnreadCount
		if err := rows.Scan(&thread, &c.Notifications, &c.Highlights); err != nil {
			return nil, err
		}
		out[thread] = c
	}
	return out, rows.Err()
}

// UnreadTotal returns the number of the user's unread notifications in every room, the badge
// count sent to push gateways.
func (q *Q) UnreadTotal(ctx context.Context, userID string) (int, error) {
	var n int
	err := q.queryRow(ctx, `
		SELECT COUNT(*) FROM `+notificationsOf(`{u} = $1`)+` a
		JOIN memberships m ON m.room_nid = a.room_nid AND m.user_id = a.user_id AND m.membership = 'join'
		WHERE a.user_id = $1 AND a.event_nid > `+readUpTo, userID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count unread notifications of %s: %w", userID, err)
	}
	return n, nil
}

// Notification is a push action with the room's ID and whether the user has read it.
type Notification struct {
	PushAction
	RoomID string
	Read   bool
}

// Notifications returns up to limit of the user's notifications with event NIDs below before
// (0: from the newest), newest first; only highlighted ones when onlyHighlight.
func (q *Q) Notifications(ctx context.Context, userID string, before int64, limit int, onlyHighlight bool) ([]Notification, error) {
	query := `
		SELECT a.user_id, a.room_nid, a.event_nid, a.thread_id, a.highlight, a.actions, a.ts, rm.room_id,
			CASE WHEN a.event_nid <= ` + readUpTo + ` THEN 1 ELSE 0 END
		FROM ` + notificationsOf(`{u} = $1 AND {e} < $2`) + ` a JOIN rooms rm ON rm.room_nid = a.room_nid
		WHERE TRUE`
	if onlyHighlight {
		query += ` AND a.highlight`
	}
	query += ` ORDER BY a.event_nid DESC LIMIT $3`
	if before <= 0 {
		before = math.MaxInt64
	}
	rows, err := q.query(ctx, query, userID, before, limit)
	if err != nil {
		return nil, fmt.Errorf("select notifications of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		var n Notification
		var read int
		a := &n.PushAction
		if err := rows.Scan(&a.UserID, &a.RoomNID, &a.EventNID, &a.ThreadID, &a.Highlight, &a.Actions, &a.TS, &n.RoomID, &read); err != nil {
			return nil, err
		}
		n.Read = read == 1
		out = append(out, n)
	}
	return out, rows.Err()
}

// PushActionsAfter returns the notifications of up to limit events with event NIDs in
// (after, upTo], in event order (all of each event's rows), of the users that have an HTTP
// pusher.
func (q *Q) PushActionsAfter(ctx context.Context, after, upTo int64, limit int) ([]PushAction, error) {
	// Driven by the (few) users with pushers, through the (user_id, event_nid) index.
	inRange := notificationsOf(`{u} IN (SELECT h.user_id FROM pushers h WHERE h.kind = 'http') AND {e} > $1 AND {e} <= $3`)
	rows, err := q.query(ctx, `
		SELECT a.user_id, a.room_nid, a.event_nid, a.thread_id, a.highlight, a.actions, a.ts
		FROM `+inRange+` a
		WHERE a.event_nid IN (SELECT DISTINCT b.event_nid FROM `+inRange+` b ORDER BY b.event_nid LIMIT $2)
		ORDER BY a.event_nid, a.user_id`, after, limit, upTo)
	if err != nil {
		return nil, fmt.Errorf("select push actions after %d: %w", after, err)
	}
	defer rows.Close()
	var out []PushAction
	for rows.Next() {
		var a PushAction
		if err := rows.Scan(&a.UserID, &a.RoomNID, &a.EventNID, &a.ThreadID, &a.Highlight, &a.Actions, &a.TS); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Pusher is one of a user's pushers (client-server API, POST /pushers/set). Data is the
// pusher's data object as JSON; PushKeyTS when it was set up, in milliseconds.
type Pusher struct {
	UserID string
	// DeviceID is the device that set the pusher up; DeleteDevices removes its pushers.
	DeviceID          string
	AppID             string
	PushKey           string
	Kind              string
	AppDisplayName    string
	DeviceDisplayName string
	ProfileTag        string
	Lang              string
	Data              string
	PushKeyTS         int64
}

const pusherColumns = `user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, pushkey_ts`

// SetPusher creates or updates the user's pusher with p's app ID and pushkey. Unless
// appendOthers, pushers of other users with the same app ID and pushkey are deleted, as the
// spec's "append" parameter says.
func (tx *Tx) SetPusher(ctx context.Context, p Pusher, appendOthers bool) error {
	tx.pushersSet = true
	if !appendOthers {
		if _, err := tx.exec(ctx, `DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3`,
			p.AppID, p.PushKey, p.UserID); err != nil {
			return fmt.Errorf("delete other pushers of %s: %w", p.AppID, err)
		}
	}
	_, err := tx.exec(ctx, `
		INSERT INTO pushers (`+pusherColumns+`, device_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = $4, app_display_name = $5,
			device_display_name = $6, profile_tag = $7, lang = $8, data = $9, device_id = $11`,
		p.UserID, p.AppID, p.PushKey, p.Kind, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang, p.Data, p.PushKeyTS, p.DeviceID)
	if err != nil {
		return fmt.Errorf("upsert pusher %s of %s: %w", p.AppID, p.UserID, err)
	}
	return nil
}

// DeletePusher deletes the user's pusher with the app ID and pushkey, or returns ErrNotFound.
func (tx *Tx) DeletePusher(ctx context.Context, userID, appID, pushKey string) error {
	res, err := tx.exec(ctx, `DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, userID, appID, pushKey)
	if err != nil {
		return fmt.Errorf("delete pusher %s of %s: %w", appID, userID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return ErrNotFound
	}
	return nil
}

// Pushers returns the user's pushers.
func (q *Q) Pushers(ctx context.Context, userID string) ([]Pusher, error) {
	rows, err := q.query(ctx, `SELECT `+pusherColumns+`, device_id FROM pushers WHERE user_id = $1 ORDER BY app_id, pushkey`, userID)
	if err != nil {
		return nil, fmt.Errorf("select pushers of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []Pusher
	for rows.Next() {
		var p Pusher
		if err := rows.Scan(&p.UserID, &p.AppID, &p.PushKey, &p.Kind, &p.AppDisplayName, &p.DeviceDisplayName,
			&p.ProfileTag, &p.Lang, &p.Data, &p.PushKeyTS, &p.DeviceID); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// RoomIDByNID returns the ID of the room with the NID, or ErrNotFound.
func (q *Q) RoomIDByNID(ctx context.Context, roomNID int64) (string, error) {
	var id string
	err := q.queryRow(ctx, `SELECT room_id FROM rooms WHERE room_nid = $1`, roomNID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("select room %d: %w", roomNID, err)
	}
	return id, nil
}

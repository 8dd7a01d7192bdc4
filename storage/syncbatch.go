package storage

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The reads of an initial /sync, batched over the user's rooms: one statement per kind for
// all of them, instead of one per room (a user in a thousand rooms would otherwise
// cost ten thousand statements, most of their time spent parsing SQL).

// in returns the subquery listing nids for the parameter placeholder ph (IN (...)), and the
// parameter's value.
func (q *Q) in(ph string, nids []int64) (string, any) {
	b := make([]byte, 0, 8*len(nids)+2)
	b = append(b, '[')
	for i, nid := range nids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, nid, 10)
	}
	b = append(b, ']')
	return fmt.Sprintf(q.dialect.intList, ph), string(b)
}

// prefixedEventColumns is eventColumns qualified with the table alias e.
var prefixedEventColumns = func() string {
	cols := strings.Split(eventColumns, ",")
	for i, c := range cols {
		cols[i] = "e." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}()

// RoomTimeline is the newest events of a room in a range, in stream order, and whether older
// ones in the range were left out.
type RoomTimeline struct {
	Events []*Event
	More   bool
}

// RoomsEventsAfter is RoomEventsAfter for many rooms at once: for each room, up to limit of
// its accepted events with since < NID <= upTo, the latest ones. Each room costs an index
// seek past its newest limit+1 events and a range scan of them, however long its history
// (a window function over the rooms' events would read all of them).
func (q *Q) RoomsEventsAfter(ctx context.Context, roomNIDs []int64, since, upTo int64, limit int) (map[int64]*RoomTimeline, error) {
	out := make(map[int64]*RoomTimeline, len(roomNIDs))
	if len(roomNIDs) == 0 {
		return out, nil
	}
	list, arg := q.in("$4", roomNIDs)
	// after is the NID of each room's (limit+2)-th newest event in the range (since when
	// there are fewer): the events after it are the limit+1 newest. Sorted here rather than
	// by the database, which would copy every row through a sorter.
	evs, err := q.events(ctx, `WITH bounds AS MATERIALIZED (
			SELECT r.room_nid, COALESCE((SELECT x.event_nid FROM events x
				WHERE x.room_nid = r.room_nid AND x.event_nid > $1 AND x.event_nid <= $2 AND NOT x.hidden
				ORDER BY x.event_nid DESC LIMIT 1 OFFSET $3), $1) AS after_nid
			FROM rooms r WHERE r.room_nid IN (`+list+`))
		SELECT `+prefixedEventColumns+` FROM bounds b
		JOIN events e ON e.room_nid = b.room_nid AND e.event_nid > b.after_nid AND e.event_nid <= $2
		WHERE NOT e.hidden`, since, upTo, limit+1, arg)
	if err != nil {
		return nil, err
	}
	for _, ev := range evs {
		tl := out[ev.RoomNID]
		if tl == nil {
			tl = &RoomTimeline{}
			out[ev.RoomNID] = tl
		}
		tl.Events = append(tl.Events, ev)
	}
	for _, tl := range out {
		slices.SortFunc(tl.Events, func(a, b *Event) int { return cmp.Compare(a.NID, b.NID) })
		if len(tl.Events) > limit {
			tl.More = true
			tl.Events = tl.Events[len(tl.Events)-limit:]
		}
	}
	return out, nil
}

// RoomsMembers returns the memberships of the rooms by room NID, each ordered by user ID,
// without the room ID.
func (q *Q) RoomsMembers(ctx context.Context, roomNIDs []int64) (map[int64][]Membership, error) {
	out := make(map[int64][]Membership, len(roomNIDs))
	if len(roomNIDs) == 0 {
		return out, nil
	}
	list, arg := q.in("$1", roomNIDs)
	rows, err := q.query(ctx, `SELECT room_nid, user_id, membership, event_nid, forgotten FROM memberships
		WHERE room_nid IN (`+list+`) ORDER BY room_nid, user_id`, arg)
	if err != nil {
		return nil, fmt.Errorf("select members of rooms: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m Membership
		if err := rows.Scan(&m.RoomNID, &m.UserID, &m.Membership, &m.EventNID, &m.Forgotten); err != nil {
			return nil, err
		}
		out[m.RoomNID] = append(out[m.RoomNID], m)
	}
	return out, rows.Err()
}

// RoomsReadPositions is ReadPositions for many rooms: by room NID, the event NIDs up to
// which the user has read it by thread ID; rooms without receipts are left out.
func (q *Q) RoomsReadPositions(ctx context.Context, userID string, roomNIDs []int64) (map[int64]map[string]int64, error) {
	out := make(map[int64]map[string]int64, len(roomNIDs))
	if len(roomNIDs) == 0 {
		return out, nil
	}
	list, arg := q.in("$2", roomNIDs)
	rows, err := q.query(ctx, `SELECT room_nid, thread_id, MAX(event_nid) FROM receipts
		WHERE room_nid IN (`+list+`) AND user_id = $1 AND receipt_type IN ('m.read', 'm.read.private')
		GROUP BY room_nid, thread_id`, userID, arg)
	if err != nil {
		return nil, fmt.Errorf("select read positions of %s: %w", userID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var room, pos int64
		var thread string
		if err := rows.Scan(&room, &thread, &pos); err != nil {
			return nil, err
		}
		if out[room] == nil {
			out[room] = map[string]int64{}
		}
		out[room][thread] = pos
	}
	return out, rows.Err()
}

// RoomsUnreadCounts is UnreadCounts for many rooms at once, each with the user's read
// positions in it from read (RoomsReadPositions): by room NID, the counts by thread. A room
// with a threaded receipt past its unthreaded one is counted on its own, as UnreadCounts does.
func (q *Q) RoomsUnreadCounts(ctx context.Context, userID string, roomNIDs []int64, read map[int64]map[string]int64, upTo int64) (map[int64]map[string]UnreadCount, error) {
	out := make(map[int64]map[string]UnreadCount, len(roomNIDs))
	if len(roomNIDs) == 0 {
		return out, nil
	}
	list, arg := q.in("$3", roomNIDs)
	rows, err := q.query(ctx, `
		SELECT a.room_nid, a.thread_id, a.event_nid, a.highlight
		FROM `+notificationsOf(`{u} = $1 AND {r} IN (`+list+`) AND {e} <= $2`)+` a`, userID, upTo, arg)
	if err != nil {
		return nil, fmt.Errorf("count unread notifications of %s: %w", userID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var room, nid int64
		var thread string
		var highlight bool
		if err := rows.Scan(&room, &thread, &nid, &highlight); err != nil {
			return nil, err
		}
		if nid <= read[room][""] {
			continue
		}
		if out[room] == nil {
			out[room] = map[string]UnreadCount{}
		}
		c := out[room][thread]
		c.Notifications++
		if highlight {
			c.Highlights++
		}
		out[room][thread] = c
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, room := range roomNIDs {
		if out[room] == nil {
			out[room] = map[string]UnreadCount{}
		}
		for thread, pos := range read[room] {
			if _, ok := out[room][thread]; ok && thread != "" && pos > read[room][""] {
				// A thread read further than the room: count the room as UnreadCounts does.
				c, err := q.UnreadCounts(ctx, userID, room, read[room], upTo)
				if err != nil {
					return nil, err
				}
				out[room] = c
				break
			}
		}
	}
	return out, nil
}

// Snapshots is Snapshot for many snapshots at once: by NID, those that exist.
func (q *Q) Snapshots(ctx context.Context, nids []int64) (map[int64]*Snapshot, error) {
	out := make(map[int64]*Snapshot, len(nids))
	if len(nids) == 0 {
		return out, nil
	}
	list, arg := q.in("$1", nids)
	rows, err := q.query(ctx, `SELECT snapshot_nid, parent_nid, chain_len FROM state_snapshots WHERE snapshot_nid IN (`+list+`)`, arg)
	if err != nil {
		return nil, fmt.Errorf("select snapshots: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		s := &Snapshot{Entries: map[int64]int64{}}
		if err := rows.Scan(&s.NID, &s.Parent, &s.ChainLen); err != nil {
			return nil, err
		}
		out[s.NID] = s
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	entries, err := q.query(ctx, `SELECT snapshot_nid, state_key_nid, event_nid FROM state_snapshot_entries WHERE snapshot_nid IN (`+list+`)`, arg)
	if err != nil {
		return nil, fmt.Errorf("select snapshot entries: %w", err)
	}
	defer entries.Close()
	for entries.Next() {
		var nid, k, ev int64
		if err := entries.Scan(&nid, &k, &ev); err != nil {
			return nil, err
		}
		if s := out[nid]; s != nil {
			s.Entries[k] = ev
		}
	}
	return out, entries.Err()
}

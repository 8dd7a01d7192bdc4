package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Relation is one event's m.relates_to link to a parent event.
type Relation struct {
	EventNID       int64
	RoomNID        int64
	RelatesTo      string // the parent's event ID
	RelType        string
	EventType      string
	Sender         string
	OriginTS       int64
	EventID        string
	AggregationKey string
}

// InsertRelation records a relation. A child may only relate to an event of its own room; any
// other relationship is "simply ignored" (client-server API, "Forming relationships between
// events"), so a relation at a known event of another room is not recorded. One at an event
// not known yet is, and sameRoom keeps it out of every query should that event arrive in
// another room.
func (tx *Tx) InsertRelation(ctx context.Context, r Relation) error {
	var parentRoom int64
	err := tx.queryRow(ctx, `SELECT room_nid FROM events WHERE event_id = $1`, r.RelatesTo).Scan(&parentRoom)
	if err == nil && parentRoom != r.RoomNID {
		return nil
	} else if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("select room of %s: %w", r.RelatesTo, err)
	}
	_, err = tx.exec(ctx, `
		INSERT INTO event_relations (event_nid, room_nid, relates_to, rel_type, event_type, sender, origin_ts, event_id, aggregation_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_nid) DO NOTHING`,
		r.EventNID, r.RoomNID, r.RelatesTo, r.RelType, r.EventType, r.Sender, r.OriginTS, r.EventID, r.AggregationKey)
	if err != nil {
		return fmt.Errorf("insert relation of %s: %w", r.EventID, err)
	}
	_, err = tx.exec(ctx, `UPDATE events SET has_children = TRUE WHERE event_id = $1 AND room_nid = $2 AND NOT has_children`,
		r.RelatesTo, r.RoomNID)
	if err != nil {
		return fmt.Errorf("mark %s as related to: %w", r.RelatesTo, err)
	}
	return nil
}

// DeleteRelation forgets the relation of a redacted event.
func (tx *Tx) DeleteRelation(ctx context.Context, eventID string) error {
	_, err := tx.exec(ctx, `DELETE FROM event_relations WHERE event_id = $1`, eventID)
	return err
}

// HasAnnotation reports whether sender already annotated parent, in the room, with this type
// and key.
func (q *Q) HasAnnotation(ctx context.Context, roomNID int64, parent, sender, eventType, key string) (bool, error) {
	var n int
	err := q.queryRow(ctx, `SELECT COUNT(*) FROM event_relations r `+sameRoom+`
		WHERE r.relates_to = $1 AND r.room_nid = $5 AND r.rel_type = 'm.annotation' AND r.sender = $2 AND r.event_type = $3
		AND r.aggregation_key = $4`,
		parent, sender, eventType, key, roomNID).Scan(&n)
	return n > 0, err
}

const relationColumns = `r.event_nid, r.room_nid, r.relates_to, r.rel_type, r.event_type, r.sender, r.origin_ts, r.event_id, r.aggregation_key`

// sameRoom joins the relations r to their parent events, keeping those in the child's room:
// every query over relations uses it, so that no relation across rooms is ever returned.
const sameRoom = `JOIN events parent ON parent.event_id = r.relates_to AND parent.room_nid = r.room_nid`

func (q *Q) relations(ctx context.Context, query string, args ...any) ([]Relation, error) {
	rows, err := q.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select relations: %w", err)
	}
	defer rows.Close()
	var out []Relation
	for rows.Next() {
		var r Relation
		if err := rows.Scan(&r.EventNID, &r.RoomNID, &r.RelatesTo, &r.RelType, &r.EventType, &r.Sender, &r.OriginTS, &r.EventID, &r.AggregationKey); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RelationsOf returns the relations pointing at the given parents, oldest first.
func (q *Q) RelationsOf(ctx context.Context, parents []string) ([]Relation, error) {
	if len(parents) == 0 {
		return nil, nil
	}
	var out []Relation
	for start := 0; start < len(parents); start += 500 {
		end := min(start+500, len(parents))
		args := make([]any, 0, end-start)
		ph := make([]string, 0, end-start)
		for i, p := range parents[start:end] {
			args = append(args, p)
			ph = append(ph, fmt.Sprintf("$%d", i+1))
		}
		rs, err := q.relations(ctx, `SELECT `+relationColumns+` FROM event_relations r `+sameRoom+`
			WHERE r.relates_to IN (`+strings.Join(ph, ",")+`) ORDER BY r.event_nid`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// ChildRelations pages through the relations pointing at parent, optionally of one rel_type
// and event type, newest first when backwards; from and to are event NIDs (exclusive from,
// 0 for none).
func (q *Q) ChildRelations(ctx context.Context, parent, relType, eventType string, from, to int64, backwards bool, limit int) ([]Relation, error) {
	cond := `r.relates_to = $1 AND ($2 = '' OR r.rel_type = $2) AND ($3 = '' OR r.event_type = $3)`
	if backwards {
		if from == 0 {
			from = 1 << 62
		}
		return q.relations(ctx, `SELECT `+relationColumns+` FROM event_relations r `+sameRoom+` WHERE `+cond+`
			AND r.event_nid < $4 AND r.event_nid > $5 ORDER BY r.event_nid DESC LIMIT $6`, parent, relType, eventType, from, to, limit)
	}
	if to == 0 {
		to = 1 << 62
	}
	return q.relations(ctx, `SELECT `+relationColumns+` FROM event_relations r `+sameRoom+` WHERE `+cond+`
		AND r.event_nid > $4 AND r.event_nid < $5 ORDER BY r.event_nid ASC LIMIT $6`, parent, relType, eventType, from, to, limit)
}

// ThreadRoots returns the roots of the room's threads ordered by their latest reply, newest
// first, with the latest reply's NID; participant limits them to threads the user started or
// replied to. before pages (latest-reply NID, exclusive; 0 for none). Only roots known to be
// events of the room count.
func (q *Q) ThreadRoots(ctx context.Context, roomNID int64, participant string, before int64, limit int) ([]Relation, error) {
	if before == 0 {
		before = 1 << 62
	}
	return q.relations(ctx, `SELECT MAX(r.event_nid), r.room_nid, r.relates_to, 'm.thread', '', '', 0, '', ''
		FROM event_relations r `+sameRoom+`
		WHERE r.room_nid = $1 AND r.rel_type = 'm.thread'
		AND ($2 = '' OR r.relates_to IN (
			SELECT p.relates_to FROM event_relations p WHERE p.room_nid = $1 AND p.rel_type = 'm.thread' AND p.sender = $2
			UNION SELECT e.event_id FROM events e WHERE e.room_nid = $1 AND e.sender = $2))
		GROUP BY r.room_nid, r.relates_to
		HAVING MAX(r.event_nid) < $3
		ORDER BY MAX(r.event_nid) DESC LIMIT $4`, roomNID, participant, before, limit)
}

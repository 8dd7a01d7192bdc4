package storage

import (
	"context"
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

// InsertRelation records a relation.
func (tx *Tx) InsertRelation(ctx context.Context, r Relation) error {
	_, err := tx.exec(ctx, `
		INSERT INTO event_relations (event_nid, room_nid, relates_to, rel_type, event_type, sender, origin_ts, event_id, aggregation_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_nid) DO NOTHING`,
		r.EventNID, r.RoomNID, r.RelatesTo, r.RelType, r.EventType, r.Sender, r.OriginTS, r.EventID, r.AggregationKey)
	if err != nil {
		return fmt.Errorf("insert relation of %s: %w", r.EventID, err)
	}
	_, err = tx.exec(ctx, `UPDATE events SET has_children = TRUE WHERE event_id = $1 AND NOT has_children`, r.RelatesTo)
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

// HasAnnotation reports whether sender already annotated parent with this type and key.
func (q *Q) HasAnnotation(ctx context.Context, parent, sender, eventType, key string) (bool, error) {
	var n int
	err := q.queryRow(ctx, `SELECT COUNT(*) FROM event_relations
		WHERE relates_to = $1 AND rel_type = 'm.annotation' AND sender = $2 AND event_type = $3 AND aggregation_key = $4`,
		parent, sender, eventType, key).Scan(&n)
	return n > 0, err
}

const relationColumns = `event_nid, room_nid, relates_to, rel_type, event_type, sender, origin_ts, event_id, aggregation_key`

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
		rs, err := q.relations(ctx, `SELECT `+relationColumns+` FROM event_relations
			WHERE relates_to IN (`+strings.Join(ph, ",")+`) ORDER BY event_nid`, args...)
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
	cond := `relates_to = $1 AND ($2 = '' OR rel_type = $2) AND ($3 = '' OR event_type = $3)`
	if backwards {
		if from == 0 {
			from = 1 << 62
		}
		return q.relations(ctx, `SELECT `+relationColumns+` FROM event_relations WHERE `+cond+`
			AND event_nid < $4 AND event_nid > $5 ORDER BY event_nid DESC LIMIT $6`, parent, relType, eventType, from, to, limit)
	}
	if to == 0 {
		to = 1 << 62
	}
	return q.relations(ctx, `SELECT `+relationColumns+` FROM event_relations WHERE `+cond+`
		AND event_nid > $4 AND event_nid < $5 ORDER BY event_nid ASC LIMIT $6`, parent, relType, eventType, from, to, limit)
}

// ThreadRoots returns the roots of the room's threads ordered by their latest reply, newest
// first, with the latest reply's NID; participant limits them to threads the user started or
// replied to. before pages (latest-reply NID, exclusive; 0 for none).
func (q *Q) ThreadRoots(ctx context.Context, roomNID int64, participant string, before int64, limit int) ([]Relation, error) {
	if before == 0 {
		before = 1 << 62
	}
	return q.relations(ctx, `SELECT MAX(r.event_nid), r.room_nid, r.relates_to, 'm.thread', '', '', 0, '', ''
		FROM event_relations r
		WHERE r.room_nid = $1 AND r.rel_type = 'm.thread'
		AND ($2 = '' OR r.relates_to IN (
			SELECT p.relates_to FROM event_relations p WHERE p.room_nid = $1 AND p.rel_type = 'm.thread' AND p.sender = $2
			UNION SELECT e.event_id FROM events e WHERE e.room_nid = $1 AND e.sender = $2))
		GROUP BY r.room_nid, r.relates_to
		HAVING MAX(r.event_nid) < $3
		ORDER BY MAX(r.event_nid) DESC LIMIT $4`, roomNID, participant, before, limit)
}

package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
)

// SearchText returns the searchable text of an event and the key it is found under
// (content.body, content.name or content.topic), or "" when the event is not searchable.
func SearchText(evType string, content []byte) (key, text string) {
	var c struct {
		Body  string `json:"body"`
		Name  string `json:"name"`
		Topic string `json:"topic"`
	}
	if json.Unmarshal(content, &c) != nil {
		return "", ""
	}
	// NUL characters (\u0000 in the event's JSON) mean nothing to a search, and PostgreSQL
	// text cannot hold them: the event would not be stored.
	clean := func(s string) string { return strings.ReplaceAll(s, "\x00", "") }
	switch evType {
	case "m.room.message":
		return "content.body", clean(c.Body)
	case "m.room.name":
		return "content.name", clean(c.Name)
	case "m.room.topic":
		return "content.topic", clean(c.Topic)
	}
	return "", ""
}

// IndexEvent adds an event to the full-text index.
func (tx *Tx) IndexEvent(ctx context.Context, eventNID, roomNID int64, key, text string) error {
	if text == "" {
		return nil
	}
	if _, err := tx.exec(ctx, tx.dialect.searchInsert, eventNID, roomNID, key, text); err != nil {
		return fmt.Errorf("index event %d: %w", eventNID, err)
	}
	return nil
}

// UnindexEvent removes a (redacted) event from the full-text index.
func (tx *Tx) UnindexEvent(ctx context.Context, eventNID int64) error {
	_, err := tx.exec(ctx, tx.dialect.searchDelete, eventNID)
	return err
}

// SearchHit is one full-text match.
type SearchHit struct {
	EventNID int64
	Rank     float64
}

// SearchQuery is a full-text search over some rooms.
type SearchQuery struct {
	Terms    string
	RoomNIDs []int64
	Keys     []string // content.body, content.name, content.topic; empty for all
	Recent   bool     // order by recency rather than rank
	Before   int64    // with Recent: only events with NID below this (0 for none)
	Offset   int      // with rank order: skip this many
	Limit    int
}

// searchTerms turns free text into words, dropping the query syntax of both backends.
func searchTerms(text string) []string {
	return strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// Search returns matching events, best or newest first, and how many match in all.
func (q *Q) Search(ctx context.Context, sq SearchQuery) ([]SearchHit, int, error) {
	words := searchTerms(sq.Terms)
	if len(words) == 0 || len(sq.RoomNIDs) == 0 {
		return nil, 0, nil
	}
	match := q.dialect.searchMatch(words)
	args := []any{match}
	rooms := make([]string, len(sq.RoomNIDs))
	for i, nid := range sq.RoomNIDs {
		args = append(args, nid)
		rooms[i] = fmt.Sprintf("$%d", len(args))
	}
	where := " AND room_nid IN (" + strings.Join(rooms, ",") + ")"
	if len(sq.Keys) > 0 {
		keys := make([]string, len(sq.Keys))
		for i, k := range sq.Keys {
			args = append(args, k)
			keys[i] = fmt.Sprintf("$%d", len(args))
		}
		where += " AND search_key IN (" + strings.Join(keys, ",") + ")"
	}
	var count int
	if err := q.queryRow(ctx, `SELECT COUNT(*) FROM event_search WHERE `+q.dialect.searchWhere+where, args...).Scan(&count); err != nil {
		return nil, 0, fmt.Errorf("count search: %w", err)
	}
	order := " ORDER BY " + q.dialect.searchRank + " DESC, " + q.dialect.searchNID + " DESC"
	if sq.Recent {
		if sq.Before > 0 {
			args = append(args, sq.Before)
			where += fmt.Sprintf(" AND %s < $%d", q.dialect.searchNID, len(args))
		}
		order = " ORDER BY " + q.dialect.searchNID + " DESC"
	}
	args = append(args, sq.Limit, sq.Offset)
	rows, err := q.query(ctx, `SELECT `+q.dialect.searchNID+`, `+q.dialect.searchRank+` FROM event_search WHERE `+q.dialect.searchWhere+where+order+
		fmt.Sprintf(" LIMIT $%d OFFSET $%d", len(args)-1, len(args)), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	var hits []SearchHit
	for rows.Next() {
		var h SearchHit
		if err := rows.Scan(&h.EventNID, &h.Rank); err != nil {
			return nil, 0, err
		}
		hits = append(hits, h)
	}
	return hits, count, rows.Err()
}

// RebuildSearchIndex indexes every searchable event again (after a port, whose index is not
// copied because each backend keeps it differently).
func (db *DB) RebuildSearchIndex(ctx context.Context) error {
	const batch = 1000
	var after int64
	for {
		evs, err := db.events(ctx, `SELECT `+eventColumns+` FROM events
			WHERE event_nid > $1 AND event_type IN ('m.room.message', 'm.room.name', 'm.room.topic') AND (NOT hidden OR status = 'backfilled') AND redacted_by = ''
			ORDER BY event_nid LIMIT $2`, after, batch)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return nil
		}
		err = db.WithTx(ctx, func(tx *Tx) error {
			for _, ev := range evs {
				var f struct {
					Content json.RawMessage `json:"content"`
				}
				_ = json.Unmarshal(ev.JSON, &f)
				key, text := SearchText(ev.Type, f.Content)
				if err := tx.IndexEvent(ctx, ev.NID, ev.RoomNID, key, text); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		after = evs[len(evs)-1].NID
	}
}

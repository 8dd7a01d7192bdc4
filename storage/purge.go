package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The states of a purge (purge_history.status), as Synapse's purge_history_status reports them.
const (
	PurgeActive   = "active"
	PurgeComplete = "complete"
	PurgeFailed   = "failed"
)

// Purge is a purge of a room's history: the room's events with depth below BeforeDepth and
// NID at most UpToNID go, but for the room's state events, its forward extremities and, unless
// DeleteLocal, the events sent by the server's own users (LocalSuffix is ":server.name"),
// which stay as outliers: out of every timeline, /messages and /context, but still there for
// the room's state snapshots and auth chains.
type Purge struct {
	ID          string
	RoomID      string
	RoomNID     int64
	Status      string
	Error       string
	BeforeDepth int64
	UpToNID     int64
	DeleteLocal bool
	CreatedTS   int64
	UpdatedTS   int64
}

// PurgeResult counts what a purge did, and lists the mxc:// URIs of the media the deleted
// events referred to (the retention job deletes the local ones no other event refers to).
type PurgeResult struct {
	Deleted int
	Kept    int // turned into outliers
	Media   []string
}

const purgeColumns = `purge_id, room_id, room_nid, status, error, before_depth, up_to_nid, delete_local, created_ts, updated_ts`

func scanPurge(row interface{ Scan(...any) error }) (*Purge, error) {
	var p Purge
	err := row.Scan(&p.ID, &p.RoomID, &p.RoomNID, &p.Status, &p.Error, &p.BeforeDepth, &p.UpToNID, &p.DeleteLocal, &p.CreatedTS, &p.UpdatedTS)
	return &p, err
}

// InsertPurge records a new active purge; ErrConflict if the room has an active purge already.
func (db *DB) InsertPurge(ctx context.Context, p Purge) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		var n int
		if err := tx.queryRow(ctx, `SELECT COUNT(*) FROM purge_history WHERE status = 'active' AND room_id = $1`, p.RoomID).Scan(&n); err != nil {
			return fmt.Errorf("select active purges of %s: %w", p.RoomID, err)
		}
		if n > 0 {
			return ErrConflict
		}
		_, err := tx.exec(ctx, `INSERT INTO purge_history (`+purgeColumns+`) VALUES ($1, $2, $3, 'active', '', $4, $5, $6, $7, $7)`,
			p.ID, p.RoomID, p.RoomNID, p.BeforeDepth, p.UpToNID, p.DeleteLocal, p.CreatedTS)
		if tx.dialect.isUniqueViolation(err) {
			return ErrConflict // another process started one just now
		} else if err != nil {
			return fmt.Errorf("insert purge %s: %w", p.ID, err)
		}
		return nil
	})
}

// PurgeByID returns a purge, or ErrNotFound.
func (q *Q) PurgeByID(ctx context.Context, id string) (*Purge, error) {
	p, err := scanPurge(q.queryRow(ctx, `SELECT `+purgeColumns+` FROM purge_history WHERE purge_id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select purge %s: %w", id, err)
	}
	return p, nil
}

// ActivePurges returns the purges not finished, oldest first: those a restart cut short.
func (q *Q) ActivePurges(ctx context.Context) ([]*Purge, error) {
	rows, err := q.query(ctx, `SELECT `+purgeColumns+` FROM purge_history WHERE status = 'active' ORDER BY created_ts`)
	if err != nil {
		return nil, fmt.Errorf("select active purges: %w", err)
	}
	defer rows.Close()
	var out []*Purge
	for rows.Next() {
		p, err := scanPurge(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// FinishPurge marks a purge complete, or failed with errText.
func (db *DB) FinishPurge(ctx context.Context, id, errText string, ts int64) error {
	status := PurgeComplete
	if errText != "" {
		status = PurgeFailed
	}
	_, err := db.writer.ExecContext(ctx, `UPDATE purge_history SET status = $2, error = $3, updated_ts = $4 WHERE purge_id = $1`,
		id, status, errText, ts)
	if err != nil {
		return fmt.Errorf("finish purge %s: %w", id, err)
	}
	return nil
}

// visible is the condition that an event is shown to clients (Event.Visible).
const purgeVisible = `(NOT hidden OR status = 'backfilled')`

// PurgeDepthAt returns the depth below which a purge up to the time ts (ms) goes: the depth of
// the room's first visible event (by origin_server_ts) at or after ts, or, when every event is
// older, one more than the deepest. found is false when nothing would be purged: the room has
// no visible message event older than ts but its forward extremities (state events, and
// outliers kept by an earlier purge, do not count).
func (q *Q) PurgeDepthAt(ctx context.Context, roomNID, ts int64) (depth int64, found bool, err error) {
	var older int
	if err := q.queryRow(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE room_nid = $1 AND origin_ts < $2 AND state_key_nid = 0 AND `+purgeVisible+`
			AND event_nid NOT IN (SELECT event_nid FROM forward_extremities WHERE room_nid = $1) LIMIT 1) o`,
		roomNID, ts).Scan(&older); err != nil {
		return 0, false, fmt.Errorf("select events of room %d before %d: %w", roomNID, ts, err)
	}
	if older == 0 {
		return 0, false, nil
	}
	err = q.queryRow(ctx, `SELECT depth FROM events WHERE room_nid = $1 AND origin_ts >= $2 AND `+purgeVisible+`
		ORDER BY origin_ts, event_nid LIMIT 1`, roomNID, ts).Scan(&depth)
	if errors.Is(err, sql.ErrNoRows) {
		var max sql.NullInt64
		if err := q.queryRow(ctx, `SELECT MAX(depth) FROM events WHERE room_nid = $1`, roomNID).Scan(&max); err != nil {
			return 0, false, fmt.Errorf("select depth of room %d: %w", roomNID, err)
		}
		return max.Int64 + 1, true, nil
	} else if err != nil {
		return 0, false, fmt.Errorf("select first event of room %d after %d: %w", roomNID, ts, err)
	}
	return depth, true, nil
}

// RunPurge carries out a purge in transactions of at most batch events, walking the room's
// events in stream order, so that the room's writers (one transaction at a time on SQLite)
// never wait long behind it: no room lock is held. After each batch it calls pause (when not
// nil) with the time the batch took, to let the writers waiting behind it go first. It may
// run again after being cut short: what it did is not done twice.
func (db *DB) RunPurge(ctx context.Context, p *Purge, localSuffix string, batch int, pause func(time.Duration)) (PurgeResult, error) {
	var res PurgeResult
	seen := map[string]bool{}
	after := int64(0)
	conflicts := 0
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		var last int64
		var media []string
		var done PurgeResult // this batch's, counted once it committed
		t0 := time.Now()
		err := db.WithTx(ctx, func(tx *Tx) error {
			var err error
			done = PurgeResult{}
			last, media, err = tx.purgeBatch(ctx, p, localSuffix, after, batch, &done)
			return err
		})
		if errors.Is(err, ErrConflict) && conflicts < 10 {
			conflicts++
			continue // another writer won: the same batch again
		} else if err != nil {
			return res, err
		}
		res.Deleted += done.Deleted
		res.Kept += done.Kept
		for _, m := range media {
			if !seen[m] {
				seen[m] = true
				res.Media = append(res.Media, m)
			}
		}
		if last == 0 {
			return res, nil
		}
		after = last
		if pause != nil {
			pause(time.Since(t0))
		}
	}
}

// purgeBatch purges the next batch events of the room after the NID after and returns the last
// NID it looked at (0 when there were none left) and the media the deleted events referred to.
func (tx *Tx) purgeBatch(ctx context.Context, p *Purge, localSuffix string, after int64, batch int, res *PurgeResult) (int64, []string, error) {
	rows, err := tx.query(ctx, `SELECT event_nid, event_type, state_key_nid, sender, status, event_json FROM events
		WHERE room_nid = $1 AND event_nid > $2 AND event_nid <= $3 AND depth < $4
		ORDER BY event_nid LIMIT $5`, p.RoomNID, after, p.UpToNID, p.BeforeDepth, batch)
	if err != nil {
		return 0, nil, fmt.Errorf("select events to purge from room %d: %w", p.RoomNID, err)
	}
	type row struct {
		nid, stateKey                int64
		typ, sender, status, content string
	}
	var found []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.nid, &r.typ, &r.stateKey, &r.sender, &r.status, &r.content); err != nil {
			rows.Close()
			return 0, nil, err
		}
		found = append(found, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, nil, err
	}
	if len(found) == 0 {
		return 0, nil, nil
	}
	extremities, err := tx.ForwardExtremities(ctx, p.RoomNID)
	if err != nil {
		return 0, nil, fmt.Errorf("select extremities of room %d: %w", p.RoomNID, err)
	}
	isExtremity := map[int64]bool{}
	for _, nid := range extremities {
		isExtremity[nid] = true
	}
	var del, keep []int64
	var media []string
	for _, r := range found {
		switch {
		case isExtremity[r.nid]:
		case r.stateKey == 0 && (p.DeleteLocal || !strings.HasSuffix(r.sender, localSuffix)):
			del = append(del, r.nid)
			media = append(media, mediaURIs(r.typ, r.content)...)
		case r.status == "" || r.status == StatusBackfilled:
			keep = append(keep, r.nid)
		}
	}
	// Kept or deleted, no client sees a purged event again: what refers to it goes.
	if err := tx.deleteReferences(ctx, p.RoomNID, append(append([]int64(nil), del...), keep...)); err != nil {
		return 0, nil, err
	}
	if len(del) > 0 {
		args, in := nidArgs(del, 0)
		if _, err := tx.exec(ctx, `DELETE FROM events WHERE event_nid IN (`+in+`)`, args...); err != nil {
			return 0, nil, fmt.Errorf("purge events of room %d: %w", p.RoomNID, err)
		}
	}
	if len(keep) > 0 {
		args, in := nidArgs(keep, 0)
		if _, err := tx.exec(ctx, `UPDATE events SET status = 'outlier', hidden = TRUE WHERE event_nid IN (`+in+`)`, args...); err != nil {
			return 0, nil, fmt.Errorf("keep purged events of room %d as outliers: %w", p.RoomNID, err)
		}
	}
	res.Deleted += len(del)
	res.Kept += len(keep)
	return found[len(found)-1].nid, media, nil
}

// deleteReferences deletes what refers to purged events: relations, sticky events, the
// full-text index, push actions (notifications) and federation queue entries. Receipts may still name a purged
// event; nothing reads the event behind a receipt.
func (tx *Tx) deleteReferences(ctx context.Context, roomNID int64, nids []int64) error {
	if len(nids) == 0 {
		return nil
	}
	args, in := nidArgs(nids, 0)
	for _, stmt := range []string{
		`DELETE FROM event_relations WHERE event_nid IN (` + in + `)`,
		`DELETE FROM sticky_events WHERE event_nid IN (` + in + `)`,
		`DELETE FROM event_search WHERE ` + tx.dialect.searchNID + ` IN (` + in + `)`,
		`DELETE FROM federation_queue_pdus WHERE event_nid IN (` + in + `)`,
	} {
		if _, err := tx.exec(ctx, stmt, args...); err != nil {
			return fmt.Errorf("purge events of room %d: %w", roomNID, err)
		}
	}
	// event_push_actions is keyed by (user_id, room_nid, event_nid): name the room's users so
	// that the key serves the delete.
	pargs, pin := nidArgs(nids, 1)
	res, err := tx.exec(ctx, `DELETE FROM event_push_actions
		WHERE user_id IN (SELECT user_id FROM memberships WHERE room_nid = $1) AND room_nid = $1 AND event_nid IN (`+pin+`)`,
		append([]any{roomNID}, pargs...)...)
	if err != nil {
		return fmt.Errorf("purge push actions of room %d: %w", roomNID, err)
	}
	deleted, _ := res.RowsAffected()
	// The notifications shared by the members on the default rules (one row per event), and
	// the members each such row leaves out.
	res, err = tx.exec(ctx, `DELETE FROM event_push_shared WHERE room_nid = $1 AND event_nid IN (`+pin+`)`,
		append([]any{roomNID}, pargs...)...)
	if err != nil {
		return fmt.Errorf("purge shared push actions of room %d: %w", roomNID, err)
	}
	shared, _ := res.RowsAffected()
	_, err = tx.exec(ctx, `DELETE FROM event_push_apart
		WHERE user_id IN (SELECT user_id FROM memberships WHERE room_nid = $1) AND room_nid = $1 AND event_nid IN (`+pin+`)`,
		append([]any{roomNID}, pargs...)...)
	if err != nil {
		return fmt.Errorf("purge push exceptions of room %d: %w", roomNID, err)
	}
	if deleted+shared > 0 {
		tx.notificationsDeleted = true // some may be unread: /sync's cached counts must go
	}
	return nil
}

// nidArgs returns nids as query arguments and their placeholders, numbered after skip.
func nidArgs(nids []int64, skip int) ([]any, string) {
	args := make([]any, len(nids))
	ph := make([]string, len(nids))
	for i, nid := range nids {
		args[i] = nid
		ph[i] = fmt.Sprintf("$%d", skip+i+1)
	}
	return args, strings.Join(ph, ",")
}

// mediaURIs returns the mxc:// URIs an event's content refers to: the file of a message or
// sticker, its thumbnail, and their encrypted forms (file.url, info.thumbnail_file.url).
func mediaURIs(evType, eventJSON string) []string {
	if (evType != "m.room.message" && evType != "m.sticker") || !strings.Contains(eventJSON, "mxc://") {
		return nil
	}
	type file struct {
		URL string `json:"url"`
	}
	var ev struct {
		Content struct {
			URL  string `json:"url"`
			File file   `json:"file"`
			Info struct {
				ThumbnailURL  string `json:"thumbnail_url"`
				ThumbnailFile file   `json:"thumbnail_file"`
			} `json:"info"`
		} `json:"content"`
	}
	if json.Unmarshal([]byte(eventJSON), &ev) != nil {
		return nil
	}
	var out []string
	for _, u := range []string{ev.Content.URL, ev.Content.File.URL, ev.Content.Info.ThumbnailURL, ev.Content.Info.ThumbnailFile.URL} {
		if strings.HasPrefix(u, "mxc://") {
			out = append(out, u)
		}
	}
	return out
}

// MediaReferenced reports whether an event of any room or a user's avatar still refers to
// the mxc:// URI.
func (q *Q) MediaReferenced(ctx context.Context, mxc string) (bool, error) {
	var n int
	err := q.queryRow(ctx, `SELECT COUNT(*) FROM (
			SELECT 1 FROM events WHERE event_json LIKE $1
			UNION ALL SELECT 1 FROM profiles WHERE avatar_url = $2
			LIMIT 1) r`, "%\""+mxc+"\"%", mxc).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("select references to %s: %w", mxc, err)
	}
	return n > 0, nil
}

// KnownRoomIDs returns the NIDs and IDs of every room the server knows.
func (q *Q) KnownRoomIDs(ctx context.Context) (map[int64]string, error) {
	rows, err := q.query(ctx, `SELECT room_nid, room_id FROM rooms`)
	if err != nil {
		return nil, fmt.Errorf("select rooms: %w", err)
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var nid int64
		var id string
		if err := rows.Scan(&nid, &id); err != nil {
			return nil, err
		}
		out[nid] = id
	}
	return out, rows.Err()
}

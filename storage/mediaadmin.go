package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// What the admin API reads and changes of media: quarantine, protection, listings and the
// candidates for deletion. Deleting an item's rows is DeleteMedia (media.go); its files are
// the media repository's.

// MediaAdmin is a media item with its moderation state.
type MediaAdmin struct {
	Media
	QuarantinedBy      string // "" when not quarantined
	SafeFromQuarantine bool
	Remote             bool  // cached media of another server
	LastAccessTS       int64 // 0: never served
}

// MediaRef names a media item.
type MediaRef struct {
	ServerName string
	MediaID    string
}

const mediaAdminColumns = `m.server_name, m.media_id, m.content_type, m.upload_name, m.size, m.sha256, m.user_id,
	m.created_ts, m.uploaded_ts, m.quarantined_by, m.safe_from_quarantine, r.media_id IS NOT NULL, COALESCE(m.last_access_ts, 0)`

const mediaAdminFrom = ` FROM media m LEFT JOIN remote_media r ON r.server_name = m.server_name AND r.media_id = m.media_id`

func scanMediaAdmin(row interface{ Scan(...any) error }) (*MediaAdmin, error) {
	var m MediaAdmin
	err := row.Scan(&m.ServerName, &m.MediaID, &m.ContentType, &m.UploadName, &m.Size, &m.SHA256, &m.UserID,
		&m.CreatedTS, &m.UploadedTS, &m.QuarantinedBy, &m.SafeFromQuarantine, &m.Remote, &m.LastAccessTS)
	return &m, err
}

// MediaAdminInfo returns a media item with its moderation state, or ErrNotFound.
func (q *Q) MediaAdminInfo(ctx context.Context, serverName, mediaID string) (*MediaAdmin, error) {
	m, err := scanMediaAdmin(q.queryRow(ctx, `SELECT `+mediaAdminColumns+mediaAdminFrom+`
		WHERE m.server_name = $1 AND m.media_id = $2`, serverName, mediaID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select media %s/%s: %w", serverName, mediaID, err)
	}
	return m, nil
}

// MediaAccess returns whether a media item is quarantined and when it was last served (0:
// never); false and 0 if it does not exist.
func (q *Q) MediaAccess(ctx context.Context, serverName, mediaID string) (quarantined bool, lastAccessTS int64, err error) {
	var by string
	err = q.queryRow(ctx, `SELECT quarantined_by, COALESCE(last_access_ts, 0) FROM media WHERE server_name = $1 AND media_id = $2`,
		serverName, mediaID).Scan(&by, &lastAccessTS)
	if errors.Is(err, sql.ErrNoRows) {
		return false, 0, nil
	} else if err != nil {
		return false, 0, fmt.Errorf("select access of %s/%s: %w", serverName, mediaID, err)
	}
	return by != "", lastAccessTS, nil
}

// TouchMedia records that a media item was served at ts.
func (tx *Tx) TouchMedia(ctx context.Context, serverName, mediaID string, ts int64) error {
	_, err := tx.exec(ctx, `UPDATE media SET last_access_ts = $3 WHERE server_name = $1 AND media_id = $2`, serverName, mediaID, ts)
	if err != nil {
		return fmt.Errorf("touch media %s/%s: %w", serverName, mediaID, err)
	}
	return nil
}

// QuarantineMedia marks media items quarantined by admin, leaving those safe from quarantine
// alone, and returns how many it marked. An empty admin lifts the quarantine instead.
func (tx *Tx) QuarantineMedia(ctx context.Context, refs []MediaRef, admin string) (int64, error) {
	var n int64
	for _, ref := range refs {
		query := `UPDATE media SET quarantined_by = $3 WHERE server_name = $1 AND media_id = $2 AND NOT safe_from_quarantine`
		if admin == "" {
			query = `UPDATE media SET quarantined_by = $3 WHERE server_name = $1 AND media_id = $2`
		}
		res, err := tx.exec(ctx, query, ref.ServerName, ref.MediaID, admin)
		if err != nil {
			return 0, fmt.Errorf("quarantine media %s/%s: %w", ref.ServerName, ref.MediaID, err)
		}
		k, _ := res.RowsAffected()
		n += k
	}
	return n, nil
}

// QuarantineUserMedia quarantines every media item userID uploaded to serverName (this
// server) that is not safe from quarantine, and returns how many.
func (tx *Tx) QuarantineUserMedia(ctx context.Context, serverName, userID, admin string) (int64, error) {
	res, err := tx.exec(ctx, `UPDATE media SET quarantined_by = $3
		WHERE server_name = $1 AND user_id = $2 AND NOT safe_from_quarantine`, serverName, userID, admin)
	if err != nil {
		return 0, fmt.Errorf("quarantine media of %s: %w", userID, err)
	}
	return res.RowsAffected()
}

// SetMediaProtected sets whether a media item is safe from quarantine; ErrNotFound if there
// is no such item.
func (tx *Tx) SetMediaProtected(ctx context.Context, serverName, mediaID string, safe bool) error {
	res, err := tx.exec(ctx, `UPDATE media SET safe_from_quarantine = $3 WHERE server_name = $1 AND media_id = $2`, serverName, mediaID, safe)
	if err != nil {
		return fmt.Errorf("protect media %s/%s: %w", serverName, mediaID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// UserMediaOrder is a sort column of UserMedia, by the names of Synapse's admin API.
var UserMediaOrder = map[string]string{
	"media_id": "m.media_id", "upload_name": "m.upload_name", "created_ts": "m.created_ts",
	"last_access_ts": "COALESCE(m.last_access_ts, 0)", "media_length": "m.size", "media_type": "m.content_type",
	"quarantined_by": "m.quarantined_by", "safe_from_quarantine": "m.safe_from_quarantine",
}

// UserMedia returns limit media items that userID uploaded to serverName from offset from,
// sorted by orderBy (a key of UserMediaOrder) then media ID, and how many there are in all.
func (q *Q) UserMedia(ctx context.Context, serverName, userID, orderBy string, forwards bool, from, limit int) ([]*MediaAdmin, int, error) {
	col, ok := UserMediaOrder[orderBy]
	if !ok {
		return nil, 0, fmt.Errorf("user media: unknown order %q", orderBy)
	}
	var total int
	err := q.queryRow(ctx, `SELECT COUNT(*) FROM media WHERE server_name = $1 AND user_id = $2`, serverName, userID).Scan(&total)
	if err != nil {
		return nil, 0, fmt.Errorf("count media of %s: %w", userID, err)
	}
	dir := "ASC"
	if !forwards {
		dir = "DESC"
	}
	rows, err := q.query(ctx, `SELECT `+mediaAdminColumns+mediaAdminFrom+`
		WHERE m.server_name = $1 AND m.user_id = $2
		ORDER BY `+col+` `+dir+`, m.media_id ASC LIMIT $3 OFFSET $4`, serverName, userID, limit, from)
	if err != nil {
		return nil, 0, fmt.Errorf("select media of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []*MediaAdmin
	for rows.Next() {
		m, err := scanMediaAdmin(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("scan media: %w", err)
		}
		out = append(out, m)
	}
	return out, total, rows.Err()
}

// OldLocalMedia returns the IDs of serverName's (this server's) media last served (or, never
// served, created) before beforeTS and larger than sizeGT bytes, leaving out quarantined
// media and media safe from quarantine, as Synapse's deletion by date does.
func (q *Q) OldLocalMedia(ctx context.Context, serverName string, beforeTS, sizeGT int64) ([]string, error) {
	ids, err := q.strings(ctx, `SELECT media_id FROM media
		WHERE server_name = $1 AND COALESCE(last_access_ts, created_ts) < $2 AND size > $3 AND quarantined_by = '' AND NOT safe_from_quarantine
		ORDER BY media_id`, serverName, beforeTS, sizeGT)
	if err != nil {
		return nil, fmt.Errorf("select old local media: %w", err)
	}
	return ids, nil
}

// OldRemoteMedia returns the cached media of other servers last served (or, never served,
// fetched) before beforeTS, except quarantined media (whose row keeps it quarantined should
// it be fetched again).
func (q *Q) OldRemoteMedia(ctx context.Context, beforeTS int64) ([]MediaRef, error) {
	rows, err := q.query(ctx, `SELECT r.server_name, r.media_id FROM remote_media r
		JOIN media m ON m.server_name = r.server_name AND m.media_id = r.media_id
		WHERE COALESCE(m.last_access_ts, r.fetched_ts) < $1 AND m.quarantined_by = ''`, beforeTS)
	if err != nil {
		return nil, fmt.Errorf("select old remote media: %w", err)
	}
	defer rows.Close()
	var out []MediaRef
	for rows.Next() {
		var ref MediaRef
		if err := rows.Scan(&ref.ServerName, &ref.MediaID); err != nil {
			return nil, err
		}
		out = append(out, ref)
	}
	return out, rows.Err()
}

// MediaThumbnails returns the cached thumbnails of a media item.
func (q *Q) MediaThumbnails(ctx context.Context, serverName, mediaID string) ([]Thumbnail, error) {
	rows, err := q.query(ctx, `SELECT width, height, method, content_type, size, created_ts FROM media_thumbnails
		WHERE server_name = $1 AND media_id = $2`, serverName, mediaID)
	if err != nil {
		return nil, fmt.Errorf("select thumbnails of %s/%s: %w", serverName, mediaID, err)
	}
	defer rows.Close()
	var out []Thumbnail
	for rows.Next() {
		th := Thumbnail{ServerName: serverName, MediaID: mediaID}
		if err := rows.Scan(&th.Width, &th.Height, &th.Method, &th.ContentType, &th.Size, &th.CreatedTS); err != nil {
			return nil, err
		}
		out = append(out, th)
	}
	return out, rows.Err()
}

// AvatarMediaURIs returns the mxc:// URIs in use as user avatars and current room avatars.
func (q *Q) AvatarMediaURIs(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	users, err := q.strings(ctx, `SELECT avatar_url FROM profiles WHERE avatar_url <> ''`)
	if err != nil {
		return nil, fmt.Errorf("select avatars: %w", err)
	}
	for _, u := range users {
		out[u] = true
	}
	rooms, err := q.strings(ctx, `SELECT e.event_json FROM current_state c JOIN events e ON e.event_nid = c.event_nid
		WHERE e.event_type = 'm.room.avatar'`)
	if err != nil {
		return nil, fmt.Errorf("select room avatars: %w", err)
	}
	for _, js := range rooms {
		var ev struct {
			Content struct {
				URL string `json:"url"`
			} `json:"content"`
		}
		if json.Unmarshal([]byte(js), &ev) == nil && ev.Content.URL != "" {
			out[ev.Content.URL] = true
		}
	}
	return out, nil
}

// RoomMediaURIs returns the mxc:// URIs that the room's unencrypted events refer to
// (content.url and content.info.thumbnail_url), each once, in event order.
func (q *Q) RoomMediaURIs(ctx context.Context, roomNID int64) ([]string, error) {
	events, err := q.strings(ctx, `SELECT event_json FROM events
		WHERE room_nid = $1 AND event_json LIKE '%mxc://%' ORDER BY event_nid`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("select media events: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, js := range events {
		var ev struct {
			Content map[string]any `json:"content"`
		}
		if json.Unmarshal([]byte(js), &ev) != nil {
			continue
		}
		info, _ := ev.Content["info"].(map[string]any)
		for _, v := range []any{ev.Content["url"], info["thumbnail_url"]} {
			if u, ok := v.(string); ok && strings.HasPrefix(u, "mxc://") && !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out, nil
}

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// InsertRemoteMedia records media of another server fetched at fetchedTS: its media row
// (with m.ServerName the origin) and its remote_media row. Media already cached (fetched
// concurrently by another process) is kept: both copies are the same content.
func (tx *Tx) InsertRemoteMedia(ctx context.Context, m Media, fetchedTS int64) error {
	_, err := tx.exec(ctx, `INSERT INTO media (`+mediaColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (server_name, media_id) DO NOTHING`,
		m.ServerName, m.MediaID, m.ContentType, m.UploadName, m.Size, m.SHA256, m.UserID, m.CreatedTS, m.UploadedTS)
	if err != nil {
		return fmt.Errorf("insert remote media %s/%s: %w", m.ServerName, m.MediaID, err)
	}
	_, err = tx.exec(ctx, `INSERT INTO remote_media (server_name, media_id, fetched_ts) VALUES ($1, $2, $3)
		ON CONFLICT (server_name, media_id) DO NOTHING`, m.ServerName, m.MediaID, fetchedTS)
	if err != nil {
		return fmt.Errorf("insert remote media %s/%s: %w", m.ServerName, m.MediaID, err)
	}
	return nil
}

// RemoteMedia returns cached media of another server and when it was fetched, or
// ErrNotFound when it is not in the cache.
func (q *Q) RemoteMedia(ctx context.Context, serverName, mediaID string) (*Media, int64, error) {
	var m Media
	var fetchedTS int64
	err := q.queryRow(ctx, `
		SELECT m.server_name, m.media_id, m.content_type, m.upload_name, m.size, m.sha256, m.user_id,
			m.created_ts, m.uploaded_ts, r.fetched_ts
		FROM remote_media r JOIN media m ON m.server_name = r.server_name AND m.media_id = r.media_id
		WHERE r.server_name = $1 AND r.media_id = $2`, serverName, mediaID,
	).Scan(&m.ServerName, &m.MediaID, &m.ContentType, &m.UploadName, &m.Size, &m.SHA256, &m.UserID,
		&m.CreatedTS, &m.UploadedTS, &fetchedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, ErrNotFound
	} else if err != nil {
		return nil, 0, fmt.Errorf("select remote media %s/%s: %w", serverName, mediaID, err)
	}
	return &m, fetchedTS, nil
}

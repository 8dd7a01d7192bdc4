package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Media is the metadata of one mxc:// URI. The bytes are in the media store, not here.
type Media struct {
	ServerName  string
	MediaID     string
	ContentType string
	UploadName  string
	Size        int64
	SHA256      string // hex
	UserID      string // the uploader
	CreatedTS   int64
	// UploadedTS is when the content arrived; 0 while an mxc:// URI reserved with
	// POST /_matrix/media/v1/create still awaits it.
	UploadedTS int64
}

// Thumbnail is a cached thumbnail of a media item, keyed by the size and method asked for.
type Thumbnail struct {
	ServerName  string
	MediaID     string
	Width       int
	Height      int
	Method      string
	ContentType string
	Size        int64
	CreatedTS   int64
}

const mediaColumns = `server_name, media_id, content_type, upload_name, size, sha256, user_id, created_ts, uploaded_ts`

// InsertMedia records a media item; ErrConflict if its ID is taken.
func (tx *Tx) InsertMedia(ctx context.Context, m Media) error {
	_, err := tx.exec(ctx, `INSERT INTO media (`+mediaColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		m.ServerName, m.MediaID, m.ContentType, m.UploadName, m.Size, m.SHA256, m.UserID, m.CreatedTS, m.UploadedTS)
	if tx.dialect.isUniqueViolation(err) {
		return ErrConflict
	} else if err != nil {
		return fmt.Errorf("insert media %s/%s: %w", m.ServerName, m.MediaID, err)
	}
	return nil
}

// CompleteMedia fills in the content of a media item reserved without it (UploadedTS 0).
// It returns ErrNotFound if the item does not exist and ErrConflict if it already has content.
func (tx *Tx) CompleteMedia(ctx context.Context, m Media) error {
	res, err := tx.exec(ctx, `
		UPDATE media SET content_type = $3, upload_name = $4, size = $5, sha256 = $6, uploaded_ts = $7
		WHERE server_name = $1 AND media_id = $2 AND uploaded_ts = 0`,
		m.ServerName, m.MediaID, m.ContentType, m.UploadName, m.Size, m.SHA256, m.UploadedTS)
	if err != nil {
		return fmt.Errorf("complete media %s/%s: %w", m.ServerName, m.MediaID, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	if _, err := tx.Media(ctx, m.ServerName, m.MediaID); err != nil {
		return err
	}
	return ErrConflict
}

// Media returns one media item, or ErrNotFound.
func (q *Q) Media(ctx context.Context, serverName, mediaID string) (*Media, error) {
	var m Media
	err := q.queryRow(ctx, `SELECT `+mediaColumns+` FROM media WHERE server_name = $1 AND media_id = $2`, serverName, mediaID).
		Scan(&m.ServerName, &m.MediaID, &m.ContentType, &m.UploadName, &m.Size, &m.SHA256, &m.UserID, &m.CreatedTS, &m.UploadedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select media %s/%s: %w", serverName, mediaID, err)
	}
	return &m, nil
}

// PendingMediaCount counts the media items userID reserved after sinceTS that still await
// their content.
func (q *Q) PendingMediaCount(ctx context.Context, userID string, sinceTS int64) (int, error) {
	var n int
	err := q.queryRow(ctx, `SELECT COUNT(*) FROM media WHERE user_id = $1 AND uploaded_ts = 0 AND created_ts > $2`, userID, sinceTS).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count pending media of %s: %w", userID, err)
	}
	return n, nil
}

// DeleteMedia removes a media item and its cached thumbnails' rows.
func (tx *Tx) DeleteMedia(ctx context.Context, serverName, mediaID string) error {
	for _, table := range []string{"media_thumbnails", "media"} {
		if _, err := tx.exec(ctx, `DELETE FROM `+table+` WHERE server_name = $1 AND media_id = $2`, serverName, mediaID); err != nil {
			return fmt.Errorf("delete media %s/%s from %s: %w", serverName, mediaID, table, err)
		}
	}
	return nil
}

// InsertThumbnail records a generated thumbnail. A thumbnail already recorded for the same
// size and method (generated concurrently) is kept: both are equivalent.
func (tx *Tx) InsertThumbnail(ctx context.Context, th Thumbnail) error {
	_, err := tx.exec(ctx, `
		INSERT INTO media_thumbnails (server_name, media_id, width, height, method, content_type, size, created_ts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (server_name, media_id, width, height, method) DO NOTHING`,
		th.ServerName, th.MediaID, th.Width, th.Height, th.Method, th.ContentType, th.Size, th.CreatedTS)
	if err != nil {
		return fmt.Errorf("insert thumbnail %s/%s %dx%d %s: %w", th.ServerName, th.MediaID, th.Width, th.Height, th.Method, err)
	}
	return nil
}

// Thumbnail returns the cached thumbnail for a size and method, or ErrNotFound.
func (q *Q) Thumbnail(ctx context.Context, serverName, mediaID string, width, height int, method string) (*Thumbnail, error) {
	th := Thumbnail{ServerName: serverName, MediaID: mediaID, Width: width, Height: height, Method: method}
	err := q.queryRow(ctx, `
		SELECT content_type, size, created_ts FROM media_thumbnails
		WHERE server_name = $1 AND media_id = $2 AND width = $3 AND height = $4 AND method = $5`,
		serverName, mediaID, width, height, method,
	).Scan(&th.ContentType, &th.Size, &th.CreatedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select thumbnail %s/%s %dx%d %s: %w", serverName, mediaID, width, height, method, err)
	}
	return &th, nil
}

// ThumbnailCount counts the cached thumbnails of a media item.
func (q *Q) ThumbnailCount(ctx context.Context, serverName, mediaID string) (int, error) {
	var n int
	err := q.queryRow(ctx, `SELECT COUNT(*) FROM media_thumbnails WHERE server_name = $1 AND media_id = $2`, serverName, mediaID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count thumbnails of %s/%s: %w", serverName, mediaID, err)
	}
	return n, nil
}

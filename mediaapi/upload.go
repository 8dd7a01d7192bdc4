package mediaapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net/http"
	"regexp"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

const (
	// unusedExpiry is how long an mxc:// URI made by /create waits for its content: the
	// spec's recommended 24 hours.
	unusedExpiry = 24 * time.Hour
	// maxPendingUploads bounds the mxc:// URIs a user may hold without content, as the spec
	// asks ("limit the number of concurrent pending media uploads").
	maxPendingUploads = 10
)

// mediaIDPattern is the spec's media ID alphabet; anything else could be a path traversal.
var mediaIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)

// newMediaID returns 24 random URL-safe characters (144 bits).
func newMediaID() string {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// handleUpload handles POST /_matrix/media/v3/upload.
func (s *Server) handleUpload(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	m := storage.Media{ServerName: s.serverName, MediaID: newMediaID(), UserID: dev.UserID, CreatedTS: s.now().UnixMilli()}
	if err := s.receive(r, &m); err != nil {
		return nil, err
	}
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.InsertMedia(r.Context(), m) })
	if err != nil {
		s.dropContent(m)
		return nil, err
	}
	return map[string]string{"content_uri": "mxc://" + m.ServerName + "/" + m.MediaID}, nil
}

// handleCreate handles POST /_matrix/media/v1/create: an mxc:// URI whose content comes later.
func (s *Server) handleCreate(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	now := s.now()
	pending, err := s.db.PendingMediaCount(r.Context(), dev.UserID, now.Add(-unusedExpiry).UnixMilli())
	if err != nil {
		return nil, err
	}
	if pending >= maxPendingUploads {
		return nil, spec.LimitExceeded("too many pending uploads", unusedExpiry.Milliseconds())
	}
	m := storage.Media{ServerName: s.serverName, MediaID: newMediaID(), UserID: dev.UserID, CreatedTS: now.UnixMilli()}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.InsertMedia(r.Context(), m) })
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"content_uri":       "mxc://" + m.ServerName + "/" + m.MediaID,
		"unused_expires_at": now.Add(unusedExpiry).UnixMilli(),
	}, nil
}

// handleUploadTo handles PUT /_matrix/media/v3/upload/{serverName}/{mediaId}, the content of
// an mxc:// URI made by /create.
func (s *Server) handleUploadTo(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	serverName, mediaID := httputil.PathVar(r, "serverName"), httputil.PathVar(r, "mediaId")
	if !s.isLocal(serverName) || !mediaIDPattern.MatchString(mediaID) {
		return nil, spec.NotFound("unknown media ID")
	}
	m, err := s.db.Media(r.Context(), serverName, mediaID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && m.UploadedTS == 0 && s.expired(m)) {
		return nil, spec.NotFound("unknown or expired media ID")
	} else if err != nil {
		return nil, err
	}
	if m.UserID != dev.UserID {
		return nil, spec.Forbidden("this media ID was created by another user")
	}
	if m.UploadedTS != 0 || !s.claim(mediaID) {
		return nil, cannotOverwrite()
	}
	defer s.release(mediaID)
	if err := s.receive(r, m); err != nil {
		return nil, err
	}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.CompleteMedia(r.Context(), *m) })
	if errors.Is(err, storage.ErrConflict) {
		// Only possible with several processes sharing the database, which claim does not
		// cover; Lattice runs one process per database for now.
		return nil, cannotOverwrite()
	} else if err != nil {
		s.dropContent(*m)
		return nil, err
	}
	s.uploaded.notify()
	return struct{}{}, nil
}

func cannotOverwrite() error {
	return httputil.Errorf(http.StatusConflict, "M_CANNOT_OVERWRITE_MEDIA", "media already uploaded")
}

// claim marks mediaID as being uploaded; false if an upload of it is already running.
func (s *Server) claim(mediaID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.putting[mediaID] {
		return false
	}
	s.putting[mediaID] = true
	return true
}

func (s *Server) release(mediaID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.putting, mediaID)
}

// expired reports whether an mxc:// URI made by /create waited too long for its content.
func (s *Server) expired(m *storage.Media) bool {
	return s.now().Sub(time.UnixMilli(m.CreatedTS)) > unusedExpiry
}

// receive stores the request body as the content of m, enforcing media.max_upload_bytes,
// and fills in its size, hash, content type, upload name and upload time. The content is
// durable when receive returns nil.
func (s *Server) receive(r *http.Request, m *storage.Media) error {
	limit := s.cfg.MaxUploadBytes
	if r.ContentLength > limit {
		return uploadTooLarge(limit)
	}
	m.ContentType = uploadContentType(r.Header.Get("Content-Type"))
	m.UploadName = r.URL.Query().Get("filename")
	hash := sha256.New()
	// MaxBytesReader needs no ResponseWriter here: it only uses it to close the connection.
	body := io.TeeReader(http.MaxBytesReader(nil, r.Body, limit), hash)
	size, err := s.store.Put(r.Context(), mediaKey(m.ServerName, m.MediaID, true), body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return uploadTooLarge(limit)
	} else if err != nil {
		if r.Context().Err() != nil {
			return spec.Unknown("upload interrupted")
		}
		return err
	}
	m.Size = size
	s.bytesUp.Add(size)
	m.SHA256 = hex.EncodeToString(hash.Sum(nil))
	m.UploadedTS = s.now().UnixMilli()
	return nil
}

func uploadTooLarge(limit int64) error {
	return httputil.Errorf(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "cannot upload files larger than %d bytes", limit)
}

// uploadContentType normalises the Content-Type of an upload; the spec's default is
// application/octet-stream.
func uploadContentType(header string) string {
	if header == "" {
		return "application/octet-stream"
	}
	mt, params, err := mime.ParseMediaType(header)
	if err != nil {
		return "application/octet-stream"
	}
	return mime.FormatMediaType(mt, params)
}

// dropContent deletes the file of an upload whose metadata could not be committed.
func (s *Server) dropContent(m storage.Media) {
	if err := s.store.Delete(context.Background(), mediaKey(m.ServerName, m.MediaID, true)); err != nil {
		s.log.Error("delete orphaned media file", "media_id", m.MediaID, "err", err)
	}
}

// handleConfig handles GET /_matrix/client/v1/media/config.
func (s *Server) handleConfig(*http.Request) (any, error) {
	return map[string]any{"m.upload.size": s.cfg.MaxUploadBytes}, nil
}

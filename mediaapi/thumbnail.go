package mediaapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

const (
	// maxThumbnailSide bounds the width and height a client may ask for: larger requests get
	// a thumbnail of this size at most. The spec's largest recommended size is 800x600.
	maxThumbnailSide = 1600
	// maxCachedThumbnails bounds the thumbnails kept per media item, so that requests for
	// ever new sizes cannot fill the disk; further sizes are generated on every request.
	maxCachedThumbnails = 16
)

// thumbnailRequest is the parsed query of a thumbnail request.
type thumbnailRequest struct {
	width, height int
	method        string
	animated      bool
}

// handleThumbnail handles GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId} and
// the deprecated /_matrix/media/v3 path.
func (s *Server) handleThumbnail(w http.ResponseWriter, r *http.Request) error {
	req, err := parseThumbnailRequest(r)
	if err != nil {
		return err
	}
	m, err := s.lookup(r)
	if err != nil {
		return err
	}
	mt, _, _ := mime.ParseMediaType(m.ContentType)
	if !thumbnailable[mt] {
		return thumbnailError(errNotAnImage)
	}
	local := s.isLocal(m.ServerName)
	th, err := s.db.Thumbnail(r.Context(), m.ServerName, m.MediaID, req.width, req.height, req.method)
	if err == nil {
		f, err := s.store.Open(r.Context(), thumbnailKey(m.ServerName, m.MediaID, local, req.width, req.height, req.method))
		if err == nil {
			defer f.Close()
			s.serveThumbnail(w, r, th.ContentType, f)
			return nil
		}
		s.log.Warn("cached thumbnail file missing; regenerating", "media_id", m.MediaID, "err", err)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return s.generateThumbnail(w, r, m, mt, req)
}

// generateThumbnail makes, caches and serves a thumbnail, or serves the original when it is
// no larger than asked for.
func (s *Server) generateThumbnail(w http.ResponseWriter, r *http.Request, m *storage.Media, contentType string, req thumbnailRequest) error {
	ctx := r.Context()
	select {
	case s.thumbSlots <- struct{}{}:
		defer func() { <-s.thumbSlots }()
	case <-ctx.Done():
		return ctx.Err()
	}
	local := s.isLocal(m.ServerName)
	f, err := s.store.Open(ctx, mediaKey(m.ServerName, m.MediaID, local))
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := probeImage(f, s.cfg.MaxImagePixels)
	if err != nil {
		return thumbnailError(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	// The spec: "When the content is smaller than the requested dimensions, servers should
	// return the original content". GIF and WebP may be animated, which only animated=true
	// allows; they are re-encoded (first frame) otherwise.
	if fits(info, req.width, req.height) && (contentType == "image/jpeg" || contentType == "image/png" || req.animated) {
		s.serveThumbnail(w, r, contentType, f)
		return nil
	}
	data, thumbType, err := thumbnail(f, info, req.width, req.height, req.method)
	if err != nil {
		return thumbnailError(err)
	}
	s.cacheThumbnail(ctx, m, req, thumbType, data)
	s.serveThumbnail(w, r, thumbType, bytes.NewReader(data))
	return nil
}

// cacheThumbnail stores a generated thumbnail: the file first, then the row. A failure only
// costs a regeneration next time, so it is logged rather than returned.
func (s *Server) cacheThumbnail(ctx context.Context, m *storage.Media, req thumbnailRequest, contentType string, data []byte) {
	if n, err := s.db.ThumbnailCount(ctx, m.ServerName, m.MediaID); err != nil || n >= maxCachedThumbnails {
		return
	}
	local := s.isLocal(m.ServerName)
	key := thumbnailKey(m.ServerName, m.MediaID, local, req.width, req.height, req.method)
	if _, err := s.store.Put(ctx, key, bytes.NewReader(data)); err != nil {
		s.log.Error("store thumbnail", "media_id", m.MediaID, "err", err)
		return
	}
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		return tx.InsertThumbnail(ctx, storage.Thumbnail{
			ServerName: m.ServerName, MediaID: m.MediaID, Width: req.width, Height: req.height, Method: req.method,
			ContentType: contentType, Size: int64(len(data)), CreatedTS: s.now().UnixMilli(),
		})
	})
	if err != nil {
		s.log.Error("record thumbnail", "media_id", m.MediaID, "err", err)
	}
}

// serveThumbnail writes a thumbnail with the headers the spec requires (inline, a file name).
func (s *Server) serveThumbnail(w http.ResponseWriter, r *http.Request, contentType string, content io.ReadSeeker) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	name := "thumbnail.png"
	if exts, _ := mime.ExtensionsByType(contentType); len(exts) > 0 {
		name = "thumbnail" + exts[0]
	}
	h.Set("Content-Disposition", `inline; filename="`+name+`"`)
	s.securityHeaders(w, r)
	http.ServeContent(w, r, "", time.Time{}, content)
}

// thumbnailError maps image errors to the spec's: 400 for content that cannot be
// thumbnailed, 413 M_TOO_LARGE for images over media.max_image_pixels.
func thumbnailError(err error) error {
	switch {
	case errors.Is(err, errImageTooLarge):
		return httputil.Errorf(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "content is too large to thumbnail")
	case errors.Is(err, errNotAnImage):
		return httputil.Errorf(http.StatusBadRequest, "M_UNKNOWN", "cannot generate thumbnails for the requested content")
	}
	return err
}

// parseThumbnailRequest reads width, height, method and animated.
func parseThumbnailRequest(r *http.Request) (thumbnailRequest, error) {
	q := r.URL.Query()
	var req thumbnailRequest
	for _, p := range []struct {
		name string
		dst  *int
	}{{"width", &req.width}, {"height", &req.height}} {
		raw := q.Get(p.name)
		if raw == "" {
			return req, spec.MissingParam(p.name + " is required")
		}
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 {
			return req, spec.InvalidParam(p.name + " must be a positive integer")
		}
		*p.dst = min(n, maxThumbnailSide)
	}
	switch req.method = q.Get("method"); req.method {
	case "":
		req.method = methodScale
	case methodScale, methodCrop:
	default:
		return req, spec.InvalidParam("method must be crop or scale")
	}
	switch q.Get("animated") {
	case "", "false":
	case "true":
		req.animated = true
	default:
		return req, spec.InvalidParam("animated must be true or false")
	}
	return req, nil
}

package mediaapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
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
// the deprecated /_matrix/media/v3 path. A thumbnail of remote media whose original is not
// cached comes from the origin's thumbnail endpoints (remoteThumbnail): a thumbnail is all
// the client asked for, and the origin can make one of an original too large for us to
// fetch. Otherwise (local media, a cached original, an origin without a thumbnail) it is
// made here from the original, decoded under our own media.max_image_pixels.
func (s *Server) handleThumbnail(w http.ResponseWriter, r *http.Request) error {
	req, err := parseThumbnailRequest(r.URL.Query())
	if err != nil {
		return err
	}
	if served, err := s.remoteThumbnail(w, r); served || err != nil {
		return err
	}
	m, err := s.lookup(r)
	if err != nil {
		return err
	}
	contentType, content, err := s.thumbnailOf(r.Context(), m, req)
	if err != nil {
		return err
	}
	defer content.Close()
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", thumbnailDisposition(contentType))
	s.securityHeaders(w, r)
	http.ServeContent(w, r, "", time.Time{}, content)
	return nil
}

// thumbnailOf returns the thumbnail of m for req and its content type: cached, or made now.
func (s *Server) thumbnailOf(ctx context.Context, m *storage.Media, req thumbnailRequest) (string, io.ReadSeekCloser, error) {
	local := s.isLocal(m.ServerName)
	mt, _, _ := mime.ParseMediaType(m.ContentType)
	if !thumbnailable[mt] {
		return "", nil, thumbnailError(errNotAnImage, local)
	}
	th, err := s.db.Thumbnail(ctx, m.ServerName, m.MediaID, req.width, req.height, req.method)
	if err == nil {
		f, err := s.store.Open(ctx, thumbnailKey(m.ServerName, m.MediaID, local, req.width, req.height, req.method))
		if err == nil {
			return th.ContentType, f, nil
		}
		s.log.Warn("cached thumbnail file missing; regenerating", "media_id", m.MediaID, "err", err)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return "", nil, err
	}
	return s.generateThumbnail(ctx, m, mt, req)
}

// generateThumbnail makes and caches a thumbnail, or returns the original when it is no
// larger than asked for.
func (s *Server) generateThumbnail(ctx context.Context, m *storage.Media, contentType string, req thumbnailRequest) (string, io.ReadSeekCloser, error) {
	select {
	case s.thumbSlots <- struct{}{}:
		defer func() { <-s.thumbSlots }()
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
	local := s.isLocal(m.ServerName)
	f, err := s.store.Open(ctx, mediaKey(m.ServerName, m.MediaID, local))
	if err != nil {
		return "", nil, err
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	info, err := probeImage(f, s.cfg.MaxImagePixels)
	if err != nil {
		return "", nil, thumbnailError(err, local)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", nil, err
	}
	// The spec: "When the content is smaller than the requested dimensions, servers should
	// return the original content". GIF and WebP may be animated, which only animated=true
	// allows; they are re-encoded (first frame) otherwise.
	if fits(info, req.width, req.height) && (contentType == "image/jpeg" || contentType == "image/png" || req.animated) {
		keep = true
		return contentType, f, nil
	}
	data, thumbType, err := thumbnail(f, info, req.width, req.height, req.method)
	if err != nil {
		return "", nil, thumbnailError(err, local)
	}
	s.cacheThumbnail(ctx, m, req, thumbType, data)
	return thumbType, bytesContent{bytes.NewReader(data)}, nil
}

// bytesContent is content held in memory, with a Close that does nothing.
type bytesContent struct{ *bytes.Reader }

func (bytesContent) Close() error { return nil }

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

// thumbnailDisposition is the Content-Disposition of a thumbnail: inline, with a file name,
// as the spec requires.
func thumbnailDisposition(contentType string) string {
	name := "thumbnail.png"
	if exts, _ := mime.ExtensionsByType(contentType); len(exts) > 0 {
		name = "thumbnail" + exts[0]
	}
	return `inline; filename="` + name + `"`
}

// thumbnailError maps image errors to the spec's: 400 for content that cannot be
// thumbnailed; M_TOO_LARGE for images over media.max_image_pixels, with 413 for local
// content and 502 for remote content.
func thumbnailError(err error, local bool) error {
	switch {
	case errors.Is(err, errImageTooLarge):
		status := http.StatusRequestEntityTooLarge
		if !local {
			status = http.StatusBadGateway
		}
		return httputil.Errorf(status, "M_TOO_LARGE", "content is too large to thumbnail")
	case errors.Is(err, errNotAnImage):
		return httputil.Errorf(http.StatusBadRequest, "M_UNKNOWN", "cannot generate thumbnails for the requested content")
	}
	return err
}

// parseThumbnailRequest reads width, height, method and animated.
func parseThumbnailRequest(q url.Values) (thumbnailRequest, error) {
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

package mediaapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/netguard"
	"github.com/lattice-chat/lattice/storage"
)

// remoteThumbnail serves the thumbnail of another server's media from that server's
// thumbnail endpoints (RemoteFetcher.Thumbnail) when this server has not cached the
// original. It reports false, for the thumbnail to be made here from the original, when the
// request is not one that may make this server fetch (local media, no access token,
// allow_remote=false, no federation), when the original is cached, and when the origin has
// no thumbnail of an image type we serve. Remote thumbnails are not cached: the next size or
// the opened image fetches the original, which is.
func (s *Server) remoteThumbnail(w http.ResponseWriter, r *http.Request) (bool, error) {
	ctx := r.Context()
	serverName, mediaID := httputil.PathVar(r, "serverName"), httputil.PathVar(r, "mediaId")
	q := r.URL.Query()
	if s.remote == nil || s.isLocal(serverName) || httputil.Device(ctx) == nil || q.Get("allow_remote") == "false" ||
		!mediaIDPattern.MatchString(mediaID) || !netguard.ValidServerName(serverName) {
		return false, nil
	}
	if _, _, err := s.db.RemoteMedia(ctx, serverName, mediaID); err == nil {
		return false, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return false, err
	}
	wait, err := waitParam(q)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait+fetchSlack)
	defer cancel()
	header, body, err := s.remote.Thumbnail(ctx, serverName, mediaID, q, wait)
	if err != nil {
		s.log.Info("no remote thumbnail; making one from the original", "destination", serverName, "media_id", mediaID, "err", err)
		return false, nil
	}
	defer body.Close()
	contentType := uploadContentType(header.Get("Content-Type"))
	if mt, _, _ := mime.ParseMediaType(contentType); !thumbnailable[mt] {
		// Only image types we would make ourselves: nothing a browser could run.
		s.log.Warn("remote thumbnail of an unexpected type", "destination", serverName, "media_id", mediaID, "content_type", contentType)
		return false, nil
	}
	data, err := io.ReadAll(io.LimitReader(body, s.cfg.MaxUploadBytes+1))
	if err != nil || int64(len(data)) > s.cfg.MaxUploadBytes {
		s.log.Warn("remote thumbnail unreadable or too large", "destination", serverName, "media_id", mediaID, "err", err)
		return false, nil
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", thumbnailDisposition(contentType))
	s.securityHeaders(w, r)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	return true, nil
}

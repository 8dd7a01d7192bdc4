package mediaapi

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/netguard"
	"github.com/lattice-chat/lattice/storage"
)

const (
	// defaultWait and maxWait bound timeout_ms: how long a download of an mxc:// URI made by
	// /create waits for its content (the spec's default is 20 seconds).
	defaultWait = 20 * time.Second
	maxWait     = 60 * time.Second
	// recheckEvery is how often a waiting download re-reads the database, in case another
	// process received the content.
	recheckEvery = time.Second
)

// contentSecurityPolicy keeps a browser that opens media directly from running it: no
// scripts, no plugins except PDF, everything sandboxed (the spec's recommended policy plus
// media-src for audio and video).
const contentSecurityPolicy = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; " +
	"style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

// inlineTypes are the content types the spec's "Serving inline content" allows with
// Content-Disposition: inline. Everything else (HTML, SVG, PDF, ...) is an attachment.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true,
	"application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true, "image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true, "audio/ogg": true,
	"audio/wave": true, "audio/wav": true, "audio/x-wav": true, "audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

// handleDownload handles GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]
// and the deprecated /_matrix/media/v3 paths.
func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) error {
	m, err := s.lookup(r)
	if err != nil {
		return err
	}
	f, err := s.store.Open(r.Context(), mediaKey(m.ServerName, m.MediaID, s.isLocal(m.ServerName)))
	if err != nil {
		return err // the row says the content is there: a missing file is our failure
	}
	defer f.Close()
	name := m.UploadName
	if _, ok := mux.Vars(r)["fileName"]; ok {
		name = httputil.PathVar(r, "fileName")
	}
	h := w.Header()
	h.Set("Content-Type", downloadContentType(m.ContentType))
	h.Set("Content-Disposition", contentDisposition(m.ContentType, name))
	s.securityHeaders(w, r)
	h.Set("ETag", `"`+m.SHA256+`"`)
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", time.Time{}, f)
	s.bytesDown.Add(cw.n)
	return nil
}

// countingWriter counts the body bytes written, for Traffic.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Traffic returns the bytes of media content received from uploads and sent to downloads
// (thumbnails not included) since start, for the metrics.
func (s *Server) Traffic() (uploaded, downloaded int64) {
	return s.bytesUp.Load(), s.bytesDown.Load()
}

// lookup validates the path's server name and media ID and returns the media item with its
// content: local media, waiting up to timeout_ms for the content of an mxc:// URI made by
// /create, or remote media from the cache or fetched from its origin (remote.go).
func (s *Server) lookup(r *http.Request) (*storage.Media, error) {
	serverName, mediaID := httputil.PathVar(r, "serverName"), httputil.PathVar(r, "mediaId")
	// The spec's security considerations: only valid server names and the media ID alphabet,
	// checked before anything else, so that no mxc:// URI can reach outside the media store
	// nor make this server fetch from a name such as "..".
	if !mediaIDPattern.MatchString(mediaID) || !netguard.ValidServerName(serverName) {
		return nil, spec.NotFound("media not found")
	}
	wait, err := waitParam(r.URL.Query())
	if err != nil {
		return nil, err
	}
	var m *storage.Media
	if !s.isLocal(serverName) {
		m, err = s.remoteMedia(r, serverName, mediaID, wait)
	} else {
		m, err = s.localMedia(r.Context(), mediaID, wait)
	}
	if err != nil {
		return nil, err
	}
	if err := s.refuseQuarantined(r.Context(), m); err != nil && !(errors.Is(err, errQuarantined) && s.adminBypass(r)) {
		return nil, err
	}
	if httputil.Device(r.Context()) == nil && s.frozen(m) {
		return nil, spec.NotFound("media uploaded after the freeze of unauthenticated media is only served by /_matrix/client/v1/media")
	}
	return m, nil
}

// frozen reports whether m is out of reach of the deprecated unauthenticated endpoints (the
// only routes without an access token): the spec's content repository ("Authenticated
// media") says media uploaded after, or during, the freeze SHOULD only be served by the
// authenticated ones, and counts remote media cached after it as new.
func (s *Server) frozen(m *storage.Media) bool {
	freeze := s.cfg.Freeze()
	return freeze.IsZero() || m.UploadedTS >= freeze.UnixMilli()
}

// localMedia returns a local media item with its content, waiting up to wait for the content
// of an mxc:// URI made by /create.
func (s *Server) localMedia(ctx context.Context, mediaID string, wait time.Duration) (*storage.Media, error) {
	deadline := s.now().Add(wait)
	for {
		m, err := s.db.Media(ctx, s.serverName, mediaID)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, spec.NotFound("media not found")
		} else if err != nil {
			return nil, err
		}
		if m.UploadedTS != 0 {
			return m, nil
		}
		if s.expired(m) {
			return nil, spec.NotFound("media not found")
		}
		left := deadline.Sub(s.now())
		if left <= 0 || ctx.Err() != nil {
			return nil, notYetUploaded()
		}
		sleepCtx(ctx, min(left, recheckEvery), s.uploaded.wait())
	}
}

func notYetUploaded() error {
	return httputil.Errorf(http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED", "content has not yet been uploaded")
}

// waitParam parses timeout_ms.
func waitParam(q url.Values) (time.Duration, error) {
	raw := q.Get("timeout_ms")
	if raw == "" {
		return defaultWait, nil
	}
	ms, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || ms < 0 {
		return 0, spec.InvalidParam("timeout_ms must be a non-negative integer")
	}
	return min(time.Duration(ms)*time.Millisecond, maxWait), nil
}

// securityHeaders sets the headers every media response carries.
func (s *Server) securityHeaders(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	// Content never changes under an mxc:// URI. Authenticated responses must not be kept
	// by shared caches, which would serve them without the access token.
	if httputil.Device(r.Context()) != nil {
		h.Set("Cache-Control", "private, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	}
}

// downloadContentType is the Content-Type served for stored content: the uploaded one, with
// a charset added to text types as the spec allows.
func downloadContentType(stored string) string {
	mt, params, err := mime.ParseMediaType(stored)
	if err != nil || stored == "" {
		return "application/octet-stream"
	}
	if strings.HasPrefix(mt, "text/") && params["charset"] == "" {
		if params == nil {
			params = map[string]string{}
		}
		params["charset"] = "utf-8"
	}
	return mime.FormatMediaType(mt, params)
}

// contentDisposition returns inline for the spec's safe inline types and attachment for
// everything else, with the file name per RFC 6266: a quoted filename when it is plain
// ASCII, otherwise filename* in UTF-8 (RFC 8187).
func contentDisposition(contentType, name string) string {
	disposition := "attachment"
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && inlineTypes[mt] {
		disposition = "inline"
	}
	if name == "" {
		return disposition
	}
	if plainASCII(name) {
		return disposition + `; filename="` + name + `"`
	}
	return disposition + "; filename*=utf-8''" + rfc8187Escape(name)
}

// plainASCII reports whether name can go in a quoted filename as is.
func plainASCII(name string) bool {
	for _, c := range []byte(name) {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '%' {
			return false
		}
	}
	return true
}

// rfc8187Escape percent-encodes everything but RFC 8187's attr-char.
func rfc8187Escape(name string) string {
	var b strings.Builder
	for _, c := range []byte(name) {
		if c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0) {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(strconv.FormatUint(uint64(c)|0x100, 16)[1:]))
		}
	}
	return b.String()
}

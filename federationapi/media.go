package federationapi

import (
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// MediaSource is this server's media repository, serving local media to other servers.
// mediaapi implements it. Both methods return the headers of the media part of the answer
// (Content-Type, Content-Disposition) and its content, which the caller closes; errors are
// the spec's (404 M_NOT_FOUND, 504 M_NOT_YET_UPLOADED, 400 for bad parameters).
type MediaSource interface {
	// LocalMedia returns the content of mediaID; query holds timeout_ms.
	LocalMedia(ctx context.Context, mediaID string, query url.Values) (http.Header, io.ReadCloser, error)
	// LocalThumbnail returns a thumbnail of mediaID; query holds width, height, method,
	// animated and timeout_ms.
	LocalThumbnail(ctx context.Context, mediaID string, query url.Values) (http.Header, io.ReadCloser, error)
}

// SetMedia gives the federation API the media repository that the media endpoints serve
// from. The repository is built after the federation API, so this is a setter; it must be
// called before the listener starts.
func (s *Server) SetMedia(m MediaSource) { s.media = m }

// handleMediaDownload handles GET /_matrix/federation/v1/media/download/{mediaId}.
func (s *Server) handleMediaDownload(r *http.Request) (any, error) {
	if s.media == nil {
		return nil, spec.NotFound("media not found")
	}
	h, content, err := s.media.LocalMedia(r.Context(), httputil.PathVar(r, "mediaId"), r.URL.Query())
	if err != nil {
		return nil, err
	}
	return multipartMedia{header: h, content: content}, nil
}

// handleMediaThumbnail handles GET /_matrix/federation/v1/media/thumbnail/{mediaId}.
func (s *Server) handleMediaThumbnail(r *http.Request) (any, error) {
	if s.media == nil {
		return nil, spec.NotFound("media not found")
	}
	h, content, err := s.media.LocalThumbnail(r.Context(), httputil.PathVar(r, "mediaId"), r.URL.Query())
	if err != nil {
		return nil, err
	}
	return multipartMedia{header: h, content: content}, nil
}

// multipartMedia is the spec's answer to the federation media endpoints: multipart/mixed
// with exactly two parts, the metadata (always the empty JSON object for now) and the
// content with its Content-Type and Content-Disposition. Lattice always sends the bytes,
// never a Location part.
type multipartMedia struct {
	header  http.Header
	content io.ReadCloser
}

// ServeHTTP writes the answer (httputil.Handle calls it).
func (m multipartMedia) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	defer m.content.Close()
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	meta, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
	if err != nil {
		return
	}
	if _, err := io.WriteString(meta, "{}"); err != nil {
		return
	}
	part := textproto.MIMEHeader{}
	for _, k := range []string{"Content-Type", "Content-Disposition"} {
		if v := m.header.Get(k); v != "" {
			part.Set(k, v)
		}
	}
	body, err := mw.CreatePart(part)
	if err != nil {
		return
	}
	// After the status line an error can only cut the answer short, which the other server
	// sees as a broken multipart body.
	if _, err := io.Copy(body, m.content); err != nil {
		return
	}
	_ = mw.Close()
}

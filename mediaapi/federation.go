package mediaapi

import (
	"context"
	"io"
	"net/http"
	"net/url"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// LocalMedia returns the content of this server's media item mediaID for another server
// (GET /_matrix/federation/v1/media/download/{mediaId}), with the Content-Type and
// Content-Disposition of its part of the multipart answer. query holds timeout_ms: how long
// to wait for the content of an mxc:// URI made by /create. Only local media is served:
// cached remote media is its origin's to serve.
func (s *Server) LocalMedia(ctx context.Context, mediaID string, query url.Values) (http.Header, io.ReadCloser, error) {
	if !mediaIDPattern.MatchString(mediaID) {
		return nil, nil, spec.NotFound("media not found")
	}
	wait, err := waitParam(query)
	if err != nil {
		return nil, nil, err
	}
	m, err := s.localMedia(ctx, mediaID, wait)
	if err != nil {
		return nil, nil, err
	}
	if err := s.refuseQuarantined(ctx, m); err != nil {
		return nil, nil, err
	}
	f, err := s.store.Open(ctx, mediaKey(s.serverName, mediaID, true))
	if err != nil {
		return nil, nil, err // the row says the content is there: a missing file is our failure
	}
	h := http.Header{}
	h.Set("Content-Type", downloadContentType(m.ContentType))
	h.Set("Content-Disposition", contentDisposition(m.ContentType, m.UploadName))
	return h, f, nil
}

// LocalThumbnail returns a thumbnail of this server's media item mediaID for another server
// (GET /_matrix/federation/v1/media/thumbnail/{mediaId}), with the headers of its part.
// query holds width, height, method, animated and timeout_ms, checked as for clients.
func (s *Server) LocalThumbnail(ctx context.Context, mediaID string, query url.Values) (http.Header, io.ReadCloser, error) {
	if !mediaIDPattern.MatchString(mediaID) {
		return nil, nil, spec.NotFound("media not found")
	}
	req, err := parseThumbnailRequest(query)
	if err != nil {
		return nil, nil, err
	}
	wait, err := waitParam(query)
	if err != nil {
		return nil, nil, err
	}
	m, err := s.localMedia(ctx, mediaID, wait)
	if err != nil {
		return nil, nil, err
	}
	if err := s.refuseQuarantined(ctx, m); err != nil {
		return nil, nil, err
	}
	contentType, content, err := s.thumbnailOf(ctx, m, req)
	if err != nil {
		return nil, nil, err
	}
	h := http.Header{}
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", thumbnailDisposition(contentType))
	return h, content, nil
}

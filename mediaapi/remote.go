package mediaapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// RemoteFetcher fetches media from the server that holds it (the server-server API's
// "Content Repository"). federationapi implements it.
type RemoteFetcher interface {
	// Download fetches the content of mxc://server/mediaID from server, which may wait up
	// to wait for content not yet uploaded. The header holds the content's Content-Type
	// and Content-Disposition (Content-Length when known); the caller closes the body.
	// Answers of the origin that our client should see come back as *httputil.Error (404
	// M_NOT_FOUND, 504 M_NOT_YET_UPLOADED, 502 M_TOO_LARGE); any other error means the
	// origin could not be reached or answered nonsense.
	Download(ctx context.Context, server, mediaID string, wait time.Duration) (http.Header, io.ReadCloser, error)
	// Thumbnail fetches the origin's thumbnail of mxc://server/mediaID for the thumbnail
	// parameters of query (width, height, method, animated), with the same header, body and
	// errors as Download.
	Thumbnail(ctx context.Context, server, mediaID string, query url.Values, wait time.Duration) (http.Header, io.ReadCloser, error)
}

// SetRemote gives the media repository its way to other servers' media. Without one (no
// federation), remote media is only served from the cache. It must be called before the
// server handles requests.
func (s *Server) SetRemote(f RemoteFetcher) { s.remote = f }

// fetchSlack is how long a remote fetch may take beyond the wait it grants the origin:
// the transfer itself. The federation client also bounds each request.
const fetchSlack = 2 * time.Minute

// remoteMedia returns media of serverName, another server: from the cache, or fetched from
// its origin and cached. allow_remote=false (the deprecated endpoints' loop guard) serves
// the cache only, and so do the deprecated unauthenticated endpoints: what was cached before
// media.unauthenticated_media_freeze is served there like local media, but a request without
// an access token never makes this server fetch, so that it is no open proxy filling its
// disk for anyone; the spec's freeze counts freshly cached remote media as new anyway.
func (s *Server) remoteMedia(r *http.Request, serverName, mediaID string, wait time.Duration) (*storage.Media, error) {
	ctx := r.Context()
	m, _, err := s.db.RemoteMedia(ctx, serverName, mediaID)
	if err == nil {
		return m, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	switch r.URL.Query().Get("allow_remote") {
	case "", "true":
	case "false":
		return nil, spec.NotFound("media not found")
	default:
		return nil, spec.InvalidParam("allow_remote must be true or false")
	}
	if httputil.Device(ctx) == nil {
		return nil, spec.NotFound("remote media is only fetched for authenticated requests (/_matrix/client/v1/media)")
	}
	if s.remote == nil {
		return nil, spec.NotFound("media not found (federation is off)")
	}
	m, err = s.fetches.do(ctx, serverName+"/"+mediaID, wait+fetchSlack, func(ctx context.Context) (*storage.Media, error) {
		return s.fetchRemote(ctx, serverName, mediaID, wait)
	})
	if err != nil && ctx.Err() != nil {
		return nil, spec.Unknown("request cancelled")
	}
	return m, err
}

// errRemoteTooLarge and errRemoteRead tell the origin's failures from ours while its
// content is being stored.
var (
	errRemoteTooLarge = errors.New("remote content larger than media.max_upload_bytes")
	errRemoteRead     = errors.New("reading remote content")
)

// fetchRemote fetches mxc://serverName/mediaID from its origin, stores the content under
// the remote key (which no local media ID can reach) and records it in the cache. Content
// over media.max_upload_bytes is refused with the spec's 502 M_TOO_LARGE.
func (s *Server) fetchRemote(ctx context.Context, serverName, mediaID string, wait time.Duration) (*storage.Media, error) {
	header, body, err := s.remote.Download(ctx, serverName, mediaID, wait)
	if err != nil {
		var he *httputil.Error
		if !errors.As(err, &he) {
			err = fmt.Errorf("%w: %w", errRemoteRead, err)
		}
		return nil, s.remoteError(serverName, mediaID, err)
	}
	defer body.Close()
	limit := s.cfg.MaxUploadBytes
	if n, err := strconv.ParseInt(header.Get("Content-Length"), 10, 64); err == nil && n > limit {
		return nil, remoteTooLarge()
	}
	now := s.now().UnixMilli()
	m := storage.Media{
		ServerName: serverName, MediaID: mediaID,
		ContentType: uploadContentType(header.Get("Content-Type")),
		UploadName:  dispositionFileName(header.Get("Content-Disposition")),
		CreatedTS:   now, UploadedTS: now,
	}
	hash := sha256.New()
	key := mediaKey(serverName, mediaID, false)
	size, err := s.store.Put(ctx, key, io.TeeReader(&remoteBody{r: body, left: limit}, hash))
	if err != nil {
		return nil, s.remoteError(serverName, mediaID, err)
	}
	m.Size, m.SHA256 = size, hex.EncodeToString(hash.Sum(nil))
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.InsertRemoteMedia(ctx, m, now) })
	if err != nil {
		return nil, err
	}
	cached, _, err := s.db.RemoteMedia(ctx, serverName, mediaID)
	return cached, err
}

// remoteError maps a failed fetch: the origin's answers as the fetcher gave them, content
// too large as 502 M_TOO_LARGE, and every other failure of the origin (unreachable, broken
// answer, too slow) as 502 M_UNKNOWN. Other errors (the media store, the database) are ours.
func (s *Server) remoteError(serverName, mediaID string, err error) error {
	var he *httputil.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.Is(err, errRemoteTooLarge):
		return remoteTooLarge()
	case errors.Is(err, errRemoteRead), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		s.log.Warn("fetching remote media failed", "destination", serverName, "media_id", mediaID, "err", err)
		return httputil.Errorf(http.StatusBadGateway, "M_UNKNOWN", "could not fetch the media from %s", serverName)
	}
	return err
}

func remoteTooLarge() error {
	return httputil.Errorf(http.StatusBadGateway, "M_TOO_LARGE", "the remote content is too large to serve")
}

// remoteBody reads the origin's content, failing with errRemoteTooLarge past left bytes and
// wrapping the origin's read errors in errRemoteRead.
type remoteBody struct {
	r    io.Reader
	left int64
}

func (b *remoteBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errRemoteTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, errRemoteTooLarge
	}
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", errRemoteRead, err)
	}
	return n, err
}

// dispositionFileName returns the file name of a Content-Disposition header (filename or
// RFC 2231's filename*), or "" when it has none or cannot be parsed.
func dispositionFileName(header string) string {
	_, params, err := mime.ParseMediaType(header)
	if err != nil || len(params["filename"]) > 255 {
		return ""
	}
	return params["filename"]
}

// fetchGroup runs at most one fetch per key at a time: concurrent requests for the same
// uncached remote media share one fetch and its result.
type fetchGroup struct {
	mu    sync.Mutex            // guards calls
	calls map[string]*fetchCall // the fetches under way, by key
}

// fetchCall is one fetch under way; m and err are set before done is closed.
type fetchCall struct {
	done chan struct{}
	m    *storage.Media
	err  error
}

// do returns the result of fn for key, starting fn unless a fetch of key is under way. fn
// runs in its own goroutine for at most timeout, whether or not the request that started it
// is still waiting: others may wait for it, and what it fetches is cached.
func (g *fetchGroup) do(ctx context.Context, key string, timeout time.Duration, fn func(context.Context) (*storage.Media, error)) (*storage.Media, error) {
	g.mu.Lock()
	c, ok := g.calls[key]
	if !ok {
		c = &fetchCall{done: make(chan struct{})}
		if g.calls == nil {
			g.calls = make(map[string]*fetchCall)
		}
		g.calls[key] = c
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		go func() {
			defer cancel()
			c.m, c.err = fn(fctx)
			g.mu.Lock()
			delete(g.calls, key)
			g.mu.Unlock()
			close(c.done)
		}()
	}
	g.mu.Unlock()
	select {
	case <-c.done:
		return c.m, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

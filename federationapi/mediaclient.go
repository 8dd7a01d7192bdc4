package federationapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/version"
)

// MediaClient fetches other servers' media for the media repository (it implements
// mediaapi.RemoteFetcher), as the server-server API's "Content Repository" says: the
// authenticated GET /_matrix/federation/v1/media/download/{mediaId}, signed with X-Matrix
// and sent through the federation client's transport, and, only when the origin answers
// 404 M_UNRECOGNIZED (it predates Matrix 1.11), the deprecated
// GET /_matrix/media/v3/download/{serverName}/{mediaId}?allow_remote=false.
type MediaClient struct {
	s *Server
	// send sends a matrix:// request through the federation client (its resolution, TLS
	// trust and per-request timeout).
	send func(ctx context.Context, req *http.Request) (*http.Response, error)
	// redirects fetches the URL of a Location part: plain HTTPS, to public addresses only.
	redirects *http.Client
}

// httpDoer is the part of gomatrixserverlib's federation client that sends a prepared
// request; its FederationClient interface does not list it.
type httpDoer interface {
	DoHTTPRequest(ctx context.Context, req *http.Request) (*http.Response, error)
}

// MediaFetcher returns the client the media repository fetches remote media with.
func (s *Server) MediaFetcher() *MediaClient {
	c := &MediaClient{s: s}
	if d, ok := s.client.fc.(httpDoer); ok {
		c.send = d.DoHTTPRequest
	} else {
		c.send = func(context.Context, *http.Request) (*http.Response, error) {
			return nil, errors.New("the federation client cannot send media requests")
		}
	}
	// A Location part is chosen by the remote server, which must not be able to make us
	// fetch (and serve to our users) what only we can reach: the same guard as federation.
	c.redirects = &http.Client{
		Transport: &http.Transport{
			DialContext:         s.cfg.Guard.Dialer(10 * time.Second).DialContext,
			TLSClientConfig:     &tls.Config{RootCAs: s.cfg.RootCAs, InsecureSkipVerify: !s.cfg.VerifyTLS, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 || req.URL.Scheme != "https" {
				return errors.New("too many redirects, or a redirect away from HTTPS")
			}
			return nil
		},
	}
	return c
}

// Download implements mediaapi.RemoteFetcher. The origin may wait up to wait for content
// not yet uploaded (timeout_ms).
func (c *MediaClient) Download(ctx context.Context, server, mediaID string, wait time.Duration) (http.Header, io.ReadCloser, error) {
	dest := spec.ServerName(server)
	timeout := strconv.FormatInt(wait.Milliseconds(), 10)
	resp, err := c.signedGet(ctx, dest, "/_matrix/federation/v1/media/download/"+url.PathEscape(mediaID)+"?timeout_ms="+timeout)
	if err != nil {
		return nil, nil, fmt.Errorf("media %s from %s: %w", mediaID, server, err)
	}
	if resp.StatusCode == http.StatusOK {
		h, body, err := c.readMultipart(ctx, resp)
		if err != nil {
			return nil, nil, fmt.Errorf("media %s from %s: %w", mediaID, server, err)
		}
		return h, body, nil
	}
	code := errcodeOf(resp)
	if resp.StatusCode == http.StatusNotFound && code == "M_UNRECOGNIZED" {
		return c.legacyDownload(ctx, dest, mediaID, timeout)
	}
	return nil, nil, originError(server, mediaID, resp.StatusCode, code)
}

// Thumbnail implements mediaapi.RemoteFetcher: the origin's thumbnail of mxc://server/mediaID
// with the parameters of query (width, height, method, animated), through the authenticated
// GET /_matrix/federation/v1/media/thumbnail/{mediaId} or, when the origin answers it 404
// M_UNRECOGNIZED, the deprecated GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId} with
// allow_remote=false, as for downloads.
func (c *MediaClient) Thumbnail(ctx context.Context, server, mediaID string, query url.Values, wait time.Duration) (http.Header, io.ReadCloser, error) {
	dest := spec.ServerName(server)
	q := url.Values{}
	for _, k := range []string{"width", "height", "method", "animated"} {
		if v := query.Get(k); v != "" {
			q.Set(k, v)
		}
	}
	q.Set("timeout_ms", strconv.FormatInt(wait.Milliseconds(), 10))
	resp, err := c.signedGet(ctx, dest, "/_matrix/federation/v1/media/thumbnail/"+url.PathEscape(mediaID)+"?"+q.Encode())
	if err != nil {
		return nil, nil, fmt.Errorf("thumbnail of %s from %s: %w", mediaID, server, err)
	}
	if resp.StatusCode == http.StatusOK {
		h, body, err := c.readMultipart(ctx, resp)
		if err != nil {
			return nil, nil, fmt.Errorf("thumbnail of %s from %s: %w", mediaID, server, err)
		}
		return h, body, nil
	}
	code := errcodeOf(resp)
	if resp.StatusCode != http.StatusNotFound || code != "M_UNRECOGNIZED" {
		return nil, nil, originError(server, mediaID, resp.StatusCode, code)
	}
	q.Set("allow_remote", "false")
	u := "matrix://" + string(dest) + "/_matrix/media/v3/thumbnail/" + url.PathEscape(string(dest)) + "/" +
		url.PathEscape(mediaID) + "?" + q.Encode()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	if resp, err = c.send(ctx, req); err != nil {
		return nil, nil, fmt.Errorf("thumbnail of %s from %s (deprecated endpoint): %w", mediaID, dest, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, originError(server, mediaID, resp.StatusCode, errcodeOf(resp))
	}
	return resp.Header, resp.Body, nil
}

// signedGet sends GET uri to dest with an X-Matrix Authorization header.
func (c *MediaClient) signedGet(ctx context.Context, dest spec.ServerName, uri string) (*http.Response, error) {
	cfg := c.s.cfg
	fr := fclient.NewFederationRequest(http.MethodGet, cfg.ServerName, dest, uri)
	if err := fr.Sign(cfg.ServerName, cfg.KeyID, cfg.PrivateKey); err != nil {
		return nil, err
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		return nil, err
	}
	return c.send(ctx, req)
}

// legacyDownload fetches the deprecated, unauthenticated endpoint, with allow_remote=false
// as the spec requires so that servers cannot send each other round in circles.
func (c *MediaClient) legacyDownload(ctx context.Context, dest spec.ServerName, mediaID, timeout string) (http.Header, io.ReadCloser, error) {
	u := "matrix://" + string(dest) + "/_matrix/media/v3/download/" + url.PathEscape(string(dest)) + "/" +
		url.PathEscape(mediaID) + "?allow_remote=false&timeout_ms=" + timeout
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.send(ctx, req)
	if err != nil {
		return nil, nil, fmt.Errorf("media %s from %s (deprecated endpoint): %w", mediaID, dest, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, originError(string(dest), mediaID, resp.StatusCode, errcodeOf(resp))
	}
	return resp.Header, resp.Body, nil
}

// readMultipart reads the spec's two parts: the JSON metadata, then the content, or a
// Location part whose URL is fetched instead (and not cached, as the spec asks: only the
// content is). It takes ownership of resp.Body.
func (c *MediaClient) readMultipart(ctx context.Context, resp *http.Response) (http.Header, io.ReadCloser, error) {
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("answer is %q, not multipart/mixed", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	meta, err := mr.NextPart()
	if err != nil {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("metadata part: %w", err)
	}
	var metadata map[string]any
	if err := json.NewDecoder(io.LimitReader(meta, 64<<10)).Decode(&metadata); err != nil {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("metadata part is not a JSON object: %w", err)
	}
	part, err := mr.NextPart()
	if err != nil {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("content part: %w", err)
	}
	if loc := part.Header.Get("Location"); loc != "" {
		resp.Body.Close()
		return c.follow(ctx, loc)
	}
	return http.Header(part.Header), partBody{Reader: part, body: resp.Body}, nil
}

// partBody reads the content part and closes the whole answer.
type partBody struct {
	io.Reader
	body io.Closer
}

func (p partBody) Close() error { return p.body.Close() }

// follow fetches the URL of a Location part.
func (c *MediaClient) follow(ctx context.Context, location string) (http.Header, io.ReadCloser, error) {
	u, err := url.Parse(location)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, nil, fmt.Errorf("location %q is not an https URL", location)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("User-Agent", "Lattice/"+version.String())
	resp, err := c.redirects.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("location %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("location %s answered %d", u.Redacted(), resp.StatusCode)
	}
	return resp.Header, resp.Body, nil
}

// errcodeOf reads the errcode of an error answer and closes its body.
func errcodeOf(resp *http.Response) string {
	defer resp.Body.Close()
	var e struct {
		ErrCode string `json:"errcode"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
	return e.ErrCode
}

// originError turns the origin's error answer into what the media repository passes to our
// client: the spec's not found, not yet uploaded and too large; anything else is a failure
// of the origin.
func originError(server, mediaID string, status int, code string) error {
	switch {
	case status == http.StatusNotFound:
		return httputil.Errorf(http.StatusNotFound, "M_NOT_FOUND", "media not found on %s", server)
	case status == http.StatusGatewayTimeout && code == "M_NOT_YET_UPLOADED":
		return httputil.Errorf(http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED", "content has not yet been uploaded to %s", server)
	case code == "M_TOO_LARGE":
		return httputil.Errorf(http.StatusBadGateway, "M_TOO_LARGE", "the remote content is too large to serve")
	}
	return fmt.Errorf("media %s from %s: answered %d %s", mediaID, server, status, code)
}

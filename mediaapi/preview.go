package mediaapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/netguard"
	"github.com/lattice-chat/lattice/storage"
)

// previewer fetches pages for URL previews.
type previewer struct {
	cfg    config.URLPreview
	client *http.Client
}

// newPreviewer returns the previewer; guard checks every address it connects to, after DNS
// resolution and on every redirect, so that neither a hostile DNS record nor a redirect
// reaches the server's own network. A nil guard is netguard.Default().
func newPreviewer(cfg config.URLPreview, guard *netguard.Policy) *previewer {
	if guard == nil {
		guard = netguard.Default()
	}
	timeout := time.Duration(cfg.TimeoutMS) * time.Millisecond
	transport := &http.Transport{
		Proxy:                  nil, // a proxy would make the guard check the proxy, not the target
		DialContext:            guard.Dialer(timeout).DialContext,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 64 << 10,
		MaxIdleConns:           16,
		IdleConnTimeout:        30 * time.Second,
	}
	client := &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return errors.New("redirect to a non-HTTP URL")
			}
			return nil
		},
	}
	return &previewer{cfg: cfg, client: client}
}

// fetched is a fetched resource, truncated to url_preview.max_bytes.
type fetched struct {
	url         *url.URL // after redirects
	contentType string   // media type without parameters
	body        []byte
	truncated   bool
}

// fetch GETs u through the guarded client.
func (p *previewer) fetch(ctx context.Context, u *url.URL) (*fetched, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "Lattice (Matrix homeserver; URL preview)")
	req.Header.Set("Accept", "text/html,application/xhtml+xml;q=0.9,image/*;q=0.8,*/*;q=0.1")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %d", u.Host, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.cfg.MaxBytes+1))
	if err != nil {
		return nil, err
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	f := &fetched{url: resp.Request.URL, contentType: mt, body: body}
	if int64(len(body)) > p.cfg.MaxBytes {
		f.body, f.truncated = body[:p.cfg.MaxBytes], true
	}
	return f, nil
}

// handlePreviewURL handles GET /_matrix/client/v1/media/preview_url: the OpenGraph data of a
// page, with its og:image stored as local media and given as an mxc:// URI.
func (s *Server) handlePreviewURL(r *http.Request) (any, error) {
	if !s.cfg.URLPreview.Enabled {
		// Synapse does not serve the endpoint at all when previews are off.
		return nil, spec.Unrecognized("URL previews are disabled on this server")
	}
	dev := httputil.Device(r.Context())
	raw := r.URL.Query().Get("url")
	if raw == "" {
		return nil, spec.MissingParam("url is required")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, spec.InvalidParam("url must be an absolute http or https URL")
	}
	u.Fragment = ""
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(s.cfg.URLPreview.TimeoutMS)*time.Millisecond)
	defer cancel()
	page, err := s.preview.fetch(ctx, u)
	if err != nil {
		return nil, s.previewError(u, err)
	}
	og := map[string]any{}
	switch {
	case page.contentType == "text/html" || page.contentType == "application/xhtml+xml":
		for k, v := range parseOpenGraph(page.body) {
			og[k] = v
		}
		if img, _ := og["og:image"].(string); img != "" {
			for k := range og {
				if k == "og:image" || strings.HasPrefix(k, "og:image:") {
					delete(og, k) // replaced by what the fetched image really is, if anything
				}
			}
			if imgURL, err := page.url.Parse(img); err == nil && (imgURL.Scheme == "http" || imgURL.Scheme == "https") {
				if f, err := s.preview.fetch(ctx, imgURL); err == nil {
					s.addPreviewImage(ctx, og, f, dev.UserID)
				}
			}
		}
	case strings.HasPrefix(page.contentType, "image/"):
		s.addPreviewImage(ctx, og, page, dev.UserID)
	}
	return og, nil
}

// addPreviewImage stores a fetched image as local media and describes it in og. Anything
// that is not a whole, decodable image of a supported format is left out.
func (s *Server) addPreviewImage(ctx context.Context, og map[string]any, f *fetched, userID string) {
	mt := f.contentType
	if f.truncated || !thumbnailable[mt] {
		return
	}
	info, err := probeImage(bytes.NewReader(f.body), s.cfg.MaxImagePixels)
	if err != nil {
		return
	}
	now := s.now().UnixMilli()
	sum := sha256.Sum256(f.body)
	m := storage.Media{
		ServerName: s.serverName, MediaID: newMediaID(), ContentType: mt, Size: int64(len(f.body)),
		SHA256: hex.EncodeToString(sum[:]), UserID: userID, CreatedTS: now, UploadedTS: now,
	}
	if _, err := s.store.Put(ctx, mediaKey(m.ServerName, m.MediaID, true), bytes.NewReader(f.body)); err != nil {
		s.log.Error("store preview image", "err", err)
		return
	}
	if err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.InsertMedia(ctx, m) }); err != nil {
		s.dropContent(m)
		s.log.Error("record preview image", "err", err)
		return
	}
	og["og:image"] = "mxc://" + m.ServerName + "/" + m.MediaID
	og["og:image:type"] = mt
	og["og:image:width"] = info.Width
	og["og:image:height"] = info.Height
	og["matrix:image:size"] = m.Size
}

// previewError maps a failed fetch: a blocked address is M_FORBIDDEN, a timeout 504, and
// anything else the remote site's failure, 502 without the cause (a network error would
// tell an open port from a closed one), which is logged instead.
func (s *Server) previewError(u *url.URL, err error) error {
	if errors.Is(err, netguard.ErrBlocked) {
		return spec.Forbidden("URL previews of non-public addresses are not allowed")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return httputil.Errorf(http.StatusGatewayTimeout, "M_UNKNOWN", "timed out fetching the URL")
	}
	s.log.Warn("URL preview failed", "url", u.Redacted(), "err", err)
	return httputil.Errorf(http.StatusBadGateway, "M_UNKNOWN", "could not fetch the URL")
}

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
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// errForbiddenAddress is returned by the dial guard for a non-public address.
var errForbiddenAddress = errors.New("address is not public")

// blockedPrefixes are the non-public ranges netip's predicates do not cover: shared address
// space, documentation, benchmarking, reserved and translation prefixes (a NAT64 or 6to4
// address can reach a private IPv4 address).
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("fec0::/10"),
}

// publicAddr reports whether ip is a public unicast address.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() ||
		ip.IsMulticast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// dialGuard checks every address the preview client connects to, after DNS resolution and on
// every redirect, so that neither a hostile DNS record nor a redirect reaches the server's
// own network.
func dialGuard(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return err
		}
		if !allowPrivate && !publicAddr(ip) {
			return fmt.Errorf("%w: %s", errForbiddenAddress, ip)
		}
		return nil
	}
}

// previewer fetches pages for URL previews.
type previewer struct {
	cfg    config.URLPreview
	client *http.Client
}

func newPreviewer(cfg config.URLPreview) *previewer {
	timeout := time.Duration(cfg.TimeoutMS) * time.Millisecond
	dialer := &net.Dialer{Timeout: timeout, Control: dialGuard(cfg.AllowPrivate)}
	transport := &http.Transport{
		Proxy:                  nil, // a proxy would make the guard check the proxy, not the target
		DialContext:            dialer.DialContext,
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
		return nil, previewError(err)
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

// previewError maps a failed fetch: a refused address is M_FORBIDDEN, anything else the
// remote site's failure (502).
func previewError(err error) error {
	if errors.Is(err, errForbiddenAddress) {
		return spec.Forbidden("URL previews of non-public addresses are not allowed")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return httputil.Errorf(http.StatusGatewayTimeout, "M_UNKNOWN", "timed out fetching the URL")
	}
	return httputil.Errorf(http.StatusBadGateway, "M_UNKNOWN", "could not fetch the URL: %v", err)
}

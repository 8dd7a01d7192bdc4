package federationapi

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/netguard"
	"github.com/lattice-chat/lattice/storage"
)

// fakeMedia is a MediaSource holding media in memory. A thumbnail is the text
// "thumb WxH method" so that tests can see the parameters arrived.
type fakeMedia struct {
	mu      sync.Mutex
	content map[string]string // by media ID
	queries []url.Values      // every query asked; guarded by mu
}

func (f *fakeMedia) LocalMedia(_ context.Context, mediaID string, query url.Values) (http.Header, io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, query)
	c, ok := f.content[mediaID]
	if !ok {
		return nil, nil, spec.NotFound("media not found")
	}
	h := http.Header{"Content-Type": {"image/png"}, "Content-Disposition": {`inline; filename="cat.png"`}}
	return h, io.NopCloser(strings.NewReader(c)), nil
}

func (f *fakeMedia) LocalThumbnail(_ context.Context, mediaID string, query url.Values) (http.Header, io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.content[mediaID]; !ok {
		return nil, nil, spec.NotFound("media not found")
	}
	if query.Get("width") == "" {
		return nil, nil, spec.MissingParam("width is required")
	}
	h := http.Header{"Content-Type": {"image/jpeg"}, "Content-Disposition": {`inline; filename="thumbnail.jpeg"`}}
	body := fmt.Sprintf("thumb %sx%s %s", query.Get("width"), query.Get("height"), query.Get("method"))
	return h, io.NopCloser(strings.NewReader(body)), nil
}

// readParts parses a multipart/mixed answer into its parts' headers and bodies.
func readParts(t *testing.T, contentType string, body io.Reader) ([]http.Header, []string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("Content-Type %q, want multipart/mixed", contentType)
	}
	mr := multipart.NewReader(body, params["boundary"])
	var headers []http.Header
	var bodies []string
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return headers, bodies
		} else if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		headers, bodies = append(headers, http.Header(p.Header)), append(bodies, string(b))
	}
}

// TestMediaEndpoints drives the federation media endpoints through the router with signed
// requests: the spec's two parts, errors passed through, and X-Matrix required.
func TestMediaEndpoints(t *testing.T) {
	ts := newTestServer(t)
	remote := newIdentity(t, "remote.test", "ed25519:r1")
	ts.cacheKeys(t, remote.keys(t, ts.now.Add(time.Hour)))
	get := func(uri string) *httptest.ResponseRecorder {
		t.Helper()
		w := httptest.NewRecorder()
		ts.handler.ServeHTTP(w, signedRequest(t, remote, ourName, "GET", uri, nil))
		return w
	}
	if w := get("/_matrix/federation/v1/media/download/cat"); w.Code != 404 || !strings.Contains(w.Body.String(), "M_NOT_FOUND") {
		t.Errorf("download before the media repository is set: %d %s", w.Code, w.Body)
	}
	media := &fakeMedia{content: map[string]string{"cat": "PNG bytes"}}
	ts.SetMedia(media)

	w := get("/_matrix/federation/v1/media/download/cat?timeout_ms=5000")
	if w.Code != 200 {
		t.Fatalf("download: %d %s", w.Code, w.Body)
	}
	headers, bodies := readParts(t, w.Header().Get("Content-Type"), w.Body)
	if len(bodies) != 2 || headers[0].Get("Content-Type") != "application/json" || bodies[0] != "{}" {
		t.Fatalf("download parts: %v %q", headers, bodies)
	}
	if headers[1].Get("Content-Type") != "image/png" || headers[1].Get("Content-Disposition") != `inline; filename="cat.png"` || bodies[1] != "PNG bytes" {
		t.Errorf("content part: %v %q", headers[1], bodies[1])
	}
	if got := media.queries[0].Get("timeout_ms"); got != "5000" {
		t.Errorf("timeout_ms passed on as %q", got)
	}

	w = get("/_matrix/federation/v1/media/thumbnail/cat?width=32&height=24&method=crop&animated=false")
	if w.Code != 200 {
		t.Fatalf("thumbnail: %d %s", w.Code, w.Body)
	}
	headers, bodies = readParts(t, w.Header().Get("Content-Type"), w.Body)
	if len(bodies) != 2 || bodies[0] != "{}" || headers[1].Get("Content-Type") != "image/jpeg" || bodies[1] != "thumb 32x24 crop" {
		t.Errorf("thumbnail parts: %v %q", headers, bodies)
	}

	for uri, want := range map[string]string{
		"/_matrix/federation/v1/media/download/dog":                   "404 M_NOT_FOUND",
		"/_matrix/federation/v1/media/thumbnail/dog?width=1&height=1": "404 M_NOT_FOUND",
		"/_matrix/federation/v1/media/thumbnail/cat?height=1":         "400 M_MISSING_PARAM",
		"/_matrix/federation/v1/media/download/cat/extra":             "404 M_UNRECOGNIZED",
	} {
		w := get(uri)
		if got := fmt.Sprintf("%d %s", w.Code, errcode(t, w)); got != want {
			t.Errorf("%s: %s, want %s (%s)", uri, got, want, w.Body)
		}
	}
	unsigned := httptest.NewRecorder()
	ts.handler.ServeHTTP(unsigned, httptest.NewRequest("GET", "/_matrix/federation/v1/media/download/cat", nil))
	if unsigned.Code != 401 || errcode(t, unsigned) != "M_UNAUTHORIZED" {
		t.Errorf("unsigned download: %d %s", unsigned.Code, unsigned.Body)
	}
}

func errcode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct {
		ErrCode string `json:"errcode"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		return "not JSON: " + w.Body.String()
	}
	return e.ErrCode
}

// newNamedServer is newTestServer with another server name and the given roots trusted for
// outbound TLS.
func newNamedServer(t *testing.T, name spec.ServerName, roots *x509.CertPool) *testServer {
	t.Helper()
	db, err := storage.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "lattice.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	us := newIdentity(t, name, "ed25519:k")
	now := time.Now().Truncate(time.Millisecond)
	s, err := New(Config{ServerName: name, KeyID: us.keyID, PrivateKey: us.priv, KeyValidity: time.Hour,
		VerifyTLS: true, RootCAs: roots, Guard: loopbackGuard(t), Version: "test", Now: func() time.Time { return now }}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeKeyClient{keys: map[spec.ServerName]gomatrixserverlib.ServerKeys{}}
	s.fetcher.client = fake
	return &testServer{Server: s, handler: s.Handler(1 << 20), db: db, fake: fake, now: now, us: us}
}

// startOrigin starts a TLS server on loopback whose handler is made from its own address
// (its server name), and returns the name and a pool trusting its certificate.
func startOrigin(t *testing.T, handler func(name spec.ServerName) http.Handler) (spec.ServerName, *x509.CertPool) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	name := spec.ServerName(srv.Listener.Addr().String())
	srv.Config.Handler = handler(name)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return name, pool
}

// TestMediaClient fetches media from a real origin (another federation API on TLS): the
// request is signed, the parts are read, and the origin's errors keep their meaning.
func TestMediaClient(t *testing.T) {
	var origin *testServer
	name, pool := startOrigin(t, func(name spec.ServerName) http.Handler {
		origin = newNamedServer(t, name, nil)
		return origin.handler
	})
	origin.SetMedia(&fakeMedia{content: map[string]string{"cat": "PNG bytes"}})
	us := newNamedServer(t, "us.test", pool)
	origin.cacheKeys(t, us.us.keys(t, origin.now.Add(time.Hour)))
	ctx := context.Background()

	h, body, err := us.MediaFetcher().Download(ctx, string(name), "cat", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(body)
	body.Close()
	if string(got) != "PNG bytes" || h.Get("Content-Type") != "image/png" || h.Get("Content-Disposition") != `inline; filename="cat.png"` {
		t.Errorf("download: %v %q", h, got)
	}

	_, _, err = us.MediaFetcher().Download(ctx, string(name), "dog", time.Second)
	var he *httputil.Error
	if !errors.As(err, &he) || he.Status != 404 || he.Code != "M_NOT_FOUND" {
		t.Errorf("unknown media: %v, want 404 M_NOT_FOUND", err)
	}

	// A server that does not know us cannot verify our signature: a failure of the origin,
	// not an answer for our client.
	stranger := newNamedServer(t, "stranger.test", pool)
	if _, _, err := stranger.MediaFetcher().Download(ctx, string(name), "cat", time.Second); err == nil || errors.As(err, &he) {
		t.Errorf("download by a server the origin cannot verify: %v, want a plain error", err)
	}
}

// TestMediaClientFallbacks covers an origin without the federation endpoints (the deprecated
// endpoint, with allow_remote=false), a Location part, and answers that break the spec.
func TestMediaClientFallbacks(t *testing.T) {
	var mu sync.Mutex
	var legacyQuery url.Values // guarded by mu
	var fedQuery url.Values    // guarded by mu
	var fedAuth string         // guarded by mu
	name, pool := startOrigin(t, func(name spec.ServerName) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case r.URL.Path == "/_matrix/federation/v1/media/download/old":
				fedQuery, fedAuth = r.URL.Query(), r.Header.Get("Authorization")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(404)
				io.WriteString(w, `{"errcode":"M_UNRECOGNIZED","error":"unknown endpoint"}`)
			case r.URL.Path == "/_matrix/media/v3/download/"+string(name)+"/old":
				legacyQuery = r.URL.Query()
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Disposition", `attachment; filename="old.txt"`)
				io.WriteString(w, "old bytes")
			case r.URL.Path == "/_matrix/federation/v1/media/download/moved":
				mw := multipart.NewWriter(w)
				w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
				p, _ := mw.CreatePart(map[string][]string{"Content-Type": {"application/json"}})
				io.WriteString(p, "{}")
				mw.CreatePart(map[string][]string{"Location": {"https://" + string(name) + "/blob"}})
				mw.Close()
			case r.URL.Path == "/_matrix/federation/v1/media/download/movedv6":
				mw := multipart.NewWriter(w)
				w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
				p, _ := mw.CreatePart(map[string][]string{"Content-Type": {"application/json"}})
				io.WriteString(p, "{}")
				mw.CreatePart(map[string][]string{"Location": {"https://[::1]:9/blob"}})
				mw.Close()
			case r.URL.Path == "/blob":
				w.Header().Set("Content-Type", "image/gif")
				io.WriteString(w, "GIF bytes")
			case r.URL.Path == "/_matrix/federation/v1/media/download/notmultipart":
				io.WriteString(w, "raw bytes")
			case r.URL.Path == "/_matrix/federation/v1/media/download/gone":
				w.WriteHeader(404)
				io.WriteString(w, `{"errcode":"M_NOT_FOUND","error":"gone"}`)
			case r.URL.Path == "/_matrix/federation/v1/media/download/big":
				w.WriteHeader(502)
				io.WriteString(w, `{"errcode":"M_TOO_LARGE","error":"too large"}`)
			default:
				w.WriteHeader(500)
			}
		})
	})
	us := newNamedServer(t, "us.test", pool)
	ctx := context.Background()
	fetch := func(c *MediaClient, id string) (http.Header, string, error) {
		t.Helper()
		h, body, err := c.Download(ctx, string(name), id, 1500*time.Millisecond)
		if err != nil {
			return nil, "", err
		}
		defer body.Close()
		b, err := io.ReadAll(body)
		return h, string(b), err
	}

	h, got, err := fetch(us.MediaFetcher(), "old")
	if err != nil || got != "old bytes" || h.Get("Content-Disposition") != `attachment; filename="old.txt"` {
		t.Errorf("deprecated endpoint: %v %q %v", h, got, err)
	}
	mu.Lock()
	if legacyQuery.Get("allow_remote") != "false" || legacyQuery.Get("timeout_ms") != "1500" {
		t.Errorf("deprecated endpoint asked with %v", legacyQuery)
	}
	if fedQuery.Get("timeout_ms") != "1500" || !strings.HasPrefix(fedAuth, "X-Matrix ") || !strings.Contains(fedAuth, `destination="`+string(name)+`"`) {
		t.Errorf("federation endpoint asked with %v, Authorization %q", fedQuery, fedAuth)
	}
	mu.Unlock()

	// The Location is fetched through the same guard as federation: 127.0.0.1 is allowed
	// here, ::1 is not (and is refused before any connection).
	h, got, err = fetch(us.MediaFetcher(), "moved")
	if err != nil || got != "GIF bytes" || h.Get("Content-Type") != "image/gif" {
		t.Errorf("Location: %v %q %v", h, got, err)
	}
	if _, _, err := fetch(us.MediaFetcher(), "movedv6"); !errors.Is(err, netguard.ErrBlocked) {
		t.Errorf("Location on a blocked address: %v, want netguard.ErrBlocked", err)
	}

	var he *httputil.Error
	if _, _, err := fetch(us.MediaFetcher(), "notmultipart"); err == nil || errors.As(err, &he) {
		t.Errorf("an answer that is not multipart: %v, want a plain error", err)
	}
	if _, _, err := fetch(us.MediaFetcher(), "gone"); !errors.As(err, &he) || he.Status != 404 {
		t.Errorf("404 M_NOT_FOUND (no fallback): %v", err)
	}
	if _, _, err := fetch(us.MediaFetcher(), "big"); !errors.As(err, &he) || he.Status != 502 || he.Code != "M_TOO_LARGE" {
		t.Errorf("502 M_TOO_LARGE: %v", err)
	}
	if _, _, err := fetch(us.MediaFetcher(), "broken"); err == nil || errors.As(err, &he) {
		t.Errorf("500: %v, want a plain error", err)
	}
}

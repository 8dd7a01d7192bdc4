package mediaapi

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lattice-chat/lattice/internal/config"
)

func TestParseOpenGraph(t *testing.T) {
	page := `<!doctype html><html><head>
		<title>
		  Fallback   title
		</title>
		<meta name="description" content="Fallback description">
		<meta property="og:title" content="The title">
		<meta property="og:title" content="A second title is ignored">
		<META PROPERTY="og:Image" CONTENT="/cat.png">
		<meta property="og:empty" content="">
		<meta name="twitter:card" content="summary">
		</head><body><p>text</p></body></html>`
	want := map[string]string{"og:title": "The title", "og:image": "/cat.png", "og:description": "Fallback description"}
	if diff := cmp.Diff(want, parseOpenGraph([]byte(page))); diff != "" {
		t.Errorf("parseOpenGraph (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"og:title": "Only a title"}, parseOpenGraph([]byte("<title>Only a title</title>"))); diff != "" {
		t.Errorf("title only (-want +got):\n%s", diff)
	}
	long := "<meta property='og:description' content='" + strings.Repeat("é", 2*maxOGValue) + "'>"
	if got := parseOpenGraph([]byte(long))["og:description"]; len(got) > maxOGValue || !strings.HasPrefix(got, "é") {
		t.Errorf("long description not clipped: %d bytes", len(got))
	}
}

// site serves an HTML page with OpenGraph tags and the PNG it names.
func site(t *testing.T) *httptest.Server {
	t.Helper()
	img, _ := encode(t, "png", 48, 32)
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<html><head><title>ignored</title>
			<meta property="og:title" content="Lattice news">
			<meta property="og:description" content="Media has landed">
			<meta property="og:image" content="/img.png">
			<meta property="og:image:width" content="9999">
			</head></html>`))
	})
	mux.HandleFunc("/img.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(img)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/page", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestPreviewURL(t *testing.T) {
	site := site(t)
	preview := "/_matrix/client/v1/media/preview_url?url="

	off := newFixture(t, nil)
	res := off.do(t, off.alice, "GET", preview+url.QueryEscape(site.URL+"/page"), nil, "")
	if res.Code != 404 || res.errcode() != "M_UNRECOGNIZED" {
		t.Errorf("preview when disabled: %d %s", res.Code, res.Body)
	}

	guarded := newFixture(t, func(c *config.Media) { c.URLPreview.Enabled = true })
	for _, target := range []string{site.URL + "/page", strings.Replace(site.URL, "127.0.0.1", "localhost", 1) + "/page", "http://[::1]:1/", "http://10.0.0.1/"} {
		res = guarded.do(t, guarded.alice, "GET", preview+url.QueryEscape(target), nil, "")
		if res.Code != 403 || res.errcode() != "M_FORBIDDEN" {
			t.Errorf("preview of %s without allow_private: %d %s", target, res.Code, res.Body)
		}
	}
	for _, bad := range []string{"", "file:///etc/passwd", "not a url", "gopher://x/"} {
		res = guarded.do(t, guarded.alice, "GET", preview+url.QueryEscape(bad), nil, "")
		if res.Code != 400 {
			t.Errorf("preview of %q: %d %s", bad, res.Code, res.Body)
		}
	}

	f := newFixture(t, func(c *config.Media) { c.URLPreview.Enabled = true; c.URLPreview.AllowPrivate = true })
	for _, path := range []string{"/page", "/redirect"} {
		res = f.do(t, f.alice, "GET", preview+url.QueryEscape(site.URL+path), nil, "")
		if res.Code != 200 {
			t.Fatalf("preview of %s: %d %s", path, res.Code, res.Body)
		}
		mxc, _ := res.json["og:image"].(string)
		id, ok := strings.CutPrefix(mxc, "mxc://"+testServerName+"/")
		if !ok {
			t.Fatalf("og:image %q", mxc)
		}
		delete(res.json, "og:image")
		want := map[string]any{
			"og:title": "Lattice news", "og:description": "Media has landed",
			"og:image:type": "image/png", "og:image:width": float64(48), "og:image:height": float64(32),
			"matrix:image:size": res.json["matrix:image:size"],
		}
		if diff := cmp.Diff(want, res.json); diff != "" || res.json["matrix:image:size"] == nil {
			t.Errorf("preview of %s (-want +got):\n%s", path, diff)
		}
		img := f.do(t, f.bob, "GET", "/_matrix/client/v1/media/download/"+testServerName+"/"+id, nil, "")
		if img.Code != 200 || img.Header().Get("Content-Type") != "image/png" {
			t.Errorf("preview image download: %d %s", img.Code, img.Header().Get("Content-Type"))
		}
	}
	res = f.do(t, f.alice, "GET", preview+url.QueryEscape(site.URL+"/missing"), nil, "")
	if res.Code != 502 {
		t.Errorf("preview of a 404 page: %d %s", res.Code, res.Body)
	}
	res = f.do(t, "", "GET", preview+url.QueryEscape(site.URL+"/page"), nil, "")
	if res.Code != 401 {
		t.Errorf("preview without token: %d %s", res.Code, res.Body)
	}
}

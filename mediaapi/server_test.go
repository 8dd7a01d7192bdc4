package mediaapi

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/internal/config"
)

func TestUploadDownload(t *testing.T) {
	f := newFixture(t, beforeLaterFreeze)
	content := []byte("hello, media\n")
	id := f.upload(t, content, "text/plain", "café notes.txt")
	v1 := "/_matrix/client/v1/media/download/" + testServerName + "/" + id

	res := f.do(t, f.bob, "GET", v1, nil, "")
	if res.Code != 200 || !bytes.Equal(res.Body.Bytes(), content) {
		t.Fatalf("download: %d %q", res.Code, res.Body)
	}
	for header, want := range map[string]string{
		"Content-Type":                 "text/plain; charset=utf-8",
		"Content-Disposition":          "inline; filename*=utf-8''caf%C3%A9%20notes.txt",
		"Content-Security-Policy":      contentSecurityPolicy,
		"X-Content-Type-Options":       "nosniff",
		"Cross-Origin-Resource-Policy": "cross-origin",
		"Cache-Control":                "private, max-age=31536000, immutable",
	} {
		if got := res.Header().Get(header); got != want {
			t.Errorf("%s: %q, want %q", header, got, want)
		}
	}

	res = f.do(t, f.bob, "GET", v1+"/other.txt", nil, "")
	if got := res.Header().Get("Content-Disposition"); res.Code != 200 || got != `inline; filename="other.txt"` {
		t.Errorf("download with file name: %d %q", res.Code, got)
	}
	res = f.do(t, "", "GET", v1, nil, "")
	if res.Code != 401 || res.errcode() != "M_MISSING_TOKEN" {
		t.Errorf("v1 download without token: %d %s", res.Code, res.Body)
	}
	res = f.do(t, "not-a-token", "GET", v1, nil, "")
	if res.Code != 401 || res.errcode() != "M_UNKNOWN_TOKEN" {
		t.Errorf("v1 download with unknown token: %d %s", res.Code, res.Body)
	}
	res = f.do(t, "", "GET", "/_matrix/media/v3/download/"+testServerName+"/"+id, nil, "")
	if res.Code != 200 || !bytes.Equal(res.Body.Bytes(), content) || res.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Errorf("legacy download: %d %q %q", res.Code, res.Body, res.Header().Get("Cache-Control"))
	}
	// Content under an mxc:// URI never changes: a revalidation is a 304.
	res = f.do(t, f.bob, "GET", v1, nil, "")
	req := httptest.NewRequest("GET", v1, nil)
	req.Header.Set("Authorization", "Bearer "+f.bob)
	req.Header.Set("If-None-Match", res.Header().Get("ETag"))
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != 304 {
		t.Errorf("revalidation with the ETag: %d", rec.Code)
	}
}

func TestUploadWithoutContentTypeOrToken(t *testing.T) {
	f := newFixture(t, nil)
	res := f.do(t, "", "POST", "/_matrix/media/v3/upload", strings.NewReader("x"), "")
	if res.Code != 401 || res.errcode() != "M_MISSING_TOKEN" {
		t.Errorf("upload without token: %d %s", res.Code, res.Body)
	}
	id := f.upload(t, []byte{0, 1, 2}, "", "")
	res = f.do(t, f.alice, "GET", "/_matrix/client/v1/media/download/"+testServerName+"/"+id, nil, "")
	if ct, cd := res.Header().Get("Content-Type"), res.Header().Get("Content-Disposition"); ct != "application/octet-stream" || cd != "attachment" {
		t.Errorf("no content type: %q %q", ct, cd)
	}
}

func TestActiveContentIsAnAttachment(t *testing.T) {
	f := newFixture(t, nil)
	for _, ct := range []string{"text/html", "image/svg+xml", "application/pdf", "application/javascript", "text/xml", "TEXT/HTML; charset=utf-8"} {
		id := f.upload(t, []byte("<script>alert(1)</script>"), ct, "x.html")
		res := f.do(t, f.alice, "GET", "/_matrix/client/v1/media/download/"+testServerName+"/"+id, nil, "")
		if cd := res.Header().Get("Content-Disposition"); cd != `attachment; filename="x.html"` {
			t.Errorf("%s: Content-Disposition %q", ct, cd)
		}
		if csp := res.Header().Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox;") {
			t.Errorf("%s: CSP %q", ct, csp)
		}
	}
}

func TestContentDisposition(t *testing.T) {
	for _, tc := range []struct{ contentType, name, want string }{
		{"image/png", "", "inline"},
		{"image/png", "cat.png", `inline; filename="cat.png"`},
		{"video/mp4", "a b.mp4", `inline; filename="a b.mp4"`},
		{"audio/ogg; codecs=opus", "v.ogg", `inline; filename="v.ogg"`},
		{"text/html", "page.html", `attachment; filename="page.html"`},
		{"image/svg+xml", "logo.svg", `attachment; filename="logo.svg"`},
		{"application/octet-stream", `quote".bin`, `attachment; filename*=utf-8''quote%22.bin`},
		{"text/plain", "日本.txt", "inline; filename*=utf-8''%E6%97%A5%E6%9C%AC.txt"},
		{"text/plain", "50%.txt", "inline; filename*=utf-8''50%25.txt"},
		{"text/plain", "a\r\nX-Evil: 1", "inline; filename*=utf-8''a%0D%0AX-Evil%3A%201"},
		{"not a type", "x", `attachment; filename="x"`},
	} {
		if got := contentDisposition(tc.contentType, tc.name); got != tc.want {
			t.Errorf("contentDisposition(%q, %q) = %q, want %q", tc.contentType, tc.name, got, tc.want)
		}
	}
}

func TestUploadLimits(t *testing.T) {
	f := newFixture(t, func(c *config.Media) { c.MaxUploadBytes = 2 << 20 })
	// Over the 1 MiB JSON limit but within media.max_upload_bytes: accepted.
	f.upload(t, bytes.Repeat([]byte("a"), 3<<19), "application/octet-stream", "")
	big := bytes.Repeat([]byte("a"), 2<<20+1)
	res := f.do(t, f.alice, "POST", "/_matrix/media/v3/upload", bytes.NewReader(big), "application/octet-stream")
	if res.Code != 413 || res.errcode() != "M_TOO_LARGE" {
		t.Errorf("upload over the limit: %d %s", res.Code, res.Body)
	}
	// A chunked body (no Content-Length) is cut off while streaming.
	res = f.do(t, f.alice, "POST", "/_matrix/media/v3/upload", struct{ *bytes.Reader }{bytes.NewReader(big)}, "application/octet-stream")
	if res.Code != 413 || res.errcode() != "M_TOO_LARGE" {
		t.Errorf("chunked upload over the limit: %d %s", res.Code, res.Body)
	}
	// Other endpoints keep the JSON limit.
	res = f.do(t, f.alice, "POST", "/_matrix/media/v1/create", bytes.NewReader(big), "application/json")
	if res.Code != 413 {
		t.Errorf("create with a huge body: %d %s", res.Code, res.Body)
	}
	res = f.do(t, f.alice, "GET", "/_matrix/client/v1/media/config", nil, "")
	if res.Code != 200 || res.json["m.upload.size"] != float64(2<<20) {
		t.Errorf("config: %d %s", res.Code, res.Body)
	}
}

func TestDownloadNotFound(t *testing.T) {
	f := newFixture(t, nil)
	for _, path := range []string{
		"/_matrix/client/v1/media/download/" + testServerName + "/unknownmedia",
		"/_matrix/client/v1/media/download/" + testServerName + "/..%2F..%2Fetc%2Fpasswd",
		"/_matrix/client/v1/media/download/" + testServerName + "/a.b",
		"/_matrix/client/v1/media/download/other.example/abc",
		"/_matrix/client/v1/media/download/bad%2Fserver/abc",
		"/_matrix/client/v1/media/thumbnail/" + testServerName + "/unknownmedia?width=32&height=32",
		"/_matrix/media/v3/download/" + testServerName + "/unknownmedia",
	} {
		res := f.do(t, f.alice, "GET", path, nil, "")
		if res.Code != 404 || res.errcode() != "M_NOT_FOUND" {
			t.Errorf("%s: %d %s", path, res.Code, res.Body)
		}
	}
}

func TestCreateThenUpload(t *testing.T) {
	f := newFixture(t, nil)
	res := f.do(t, f.alice, "POST", "/_matrix/media/v1/create", nil, "")
	uri, _ := res.json["content_uri"].(string)
	if res.Code != 200 || !strings.HasPrefix(uri, "mxc://"+testServerName+"/") || res.json["unused_expires_at"] == nil {
		t.Fatalf("create: %d %s", res.Code, res.Body)
	}
	id := strings.TrimPrefix(uri, "mxc://"+testServerName+"/")
	download := "/_matrix/client/v1/media/download/" + testServerName + "/" + id
	put := "/_matrix/media/v3/upload/" + testServerName + "/" + id

	res = f.do(t, f.bob, "GET", download+"?timeout_ms=0", nil, "")
	if res.Code != 504 || res.errcode() != "M_NOT_YET_UPLOADED" {
		t.Errorf("download before upload: %d %s", res.Code, res.Body)
	}
	res = f.do(t, f.bob, "PUT", put, strings.NewReader("bob's"), "text/plain")
	if res.Code != 403 || res.errcode() != "M_FORBIDDEN" {
		t.Errorf("upload by another user: %d %s", res.Code, res.Body)
	}
	res = f.do(t, f.alice, "PUT", "/_matrix/media/v3/upload/"+testServerName+"/nosuchmedia", strings.NewReader("x"), "text/plain")
	if res.Code != 404 || res.errcode() != "M_NOT_FOUND" {
		t.Errorf("upload to an unknown ID: %d %s", res.Code, res.Body)
	}

	// A download waiting for the content is woken by the upload.
	waited := make(chan response, 1)
	go func() { waited <- f.do(t, f.bob, "GET", download+"?timeout_ms=10000", nil, "") }()
	res = f.do(t, f.alice, "PUT", put+"?filename=late.txt", strings.NewReader("late content"), "text/plain")
	if res.Code != 200 {
		t.Fatalf("upload: %d %s", res.Code, res.Body)
	}
	select {
	case res = <-waited:
		if res.Code != 200 || res.Body.String() != "late content" {
			t.Errorf("waiting download: %d %s", res.Code, res.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting download was not woken")
	}
	res = f.do(t, f.alice, "PUT", put, strings.NewReader("again"), "text/plain")
	if res.Code != 409 || res.errcode() != "M_CANNOT_OVERWRITE_MEDIA" {
		t.Errorf("second upload: %d %s", res.Code, res.Body)
	}
}

func TestCreateLimitsPendingUploads(t *testing.T) {
	f := newFixture(t, nil)
	for i := range maxPendingUploads {
		if res := f.do(t, f.alice, "POST", "/_matrix/media/v1/create", nil, ""); res.Code != 200 {
			t.Fatalf("create %d: %d %s", i, res.Code, res.Body)
		}
	}
	res := f.do(t, f.alice, "POST", "/_matrix/media/v1/create", nil, "")
	if res.Code != 429 || res.errcode() != "M_LIMIT_EXCEEDED" {
		t.Errorf("create over the limit: %d %s", res.Code, res.Body)
	}
}

func TestThumbnails(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		format                string
		srcW, srcH            int
		w, h                  int
		method                string
		wantW, wantH          int
		wantType              string
		wantOriginal, wantRow bool
	}{
		{format: "png", srcW: 200, srcH: 100, w: 64, h: 64, method: "crop", wantW: 64, wantH: 64, wantType: "image/png", wantRow: true},
		{format: "jpeg", srcW: 200, srcH: 100, w: 64, h: 64, method: "crop", wantW: 64, wantH: 64, wantType: "image/jpeg", wantRow: true},
		{format: "jpeg", srcW: 200, srcH: 100, w: 64, h: 64, method: "scale", wantW: 64, wantH: 32, wantType: "image/jpeg", wantRow: true},
		{format: "gif", srcW: 200, srcH: 100, w: 96, h: 96, method: "crop", wantW: 96, wantH: 96, wantType: "image/png", wantRow: true},
		{format: "webp", srcW: 150, srcH: 103, w: 32, h: 32, method: "crop", wantW: 32, wantH: 32, wantType: "image/png", wantRow: true},
		{format: "png", srcW: 200, srcH: 100, w: 640, h: 480, method: "scale", wantW: 200, wantH: 100, wantType: "image/png", wantOriginal: true},
		{format: "png", srcW: 200, srcH: 100, w: 150, h: 150, method: "crop", wantW: 100, wantH: 100, wantType: "image/png", wantRow: true},
		{format: "gif", srcW: 20, srcH: 10, w: 640, h: 480, method: "scale", wantW: 20, wantH: 10, wantType: "image/png", wantRow: true},
	} {
		t.Run(fmt.Sprintf("%s_%s_%dx%d", tc.format, tc.method, tc.w, tc.h), func(t *testing.T) {
			src, ct := encode(t, tc.format, tc.srcW, tc.srcH)
			id := f.upload(t, src, ct, "")
			path := fmt.Sprintf("/_matrix/client/v1/media/thumbnail/%s/%s?width=%d&height=%d&method=%s", testServerName, id, tc.w, tc.h, tc.method)
			for _, attempt := range []string{"generated", "cached"} {
				res := f.do(t, f.bob, "GET", path, nil, "")
				if res.Code != 200 {
					t.Fatalf("%s: %d %s", attempt, res.Code, res.Body)
				}
				w, h, _ := decodeSize(t, res.Body.Bytes())
				if got := res.Header().Get("Content-Type"); got != tc.wantType || w != tc.wantW || h != tc.wantH {
					t.Errorf("%s: %s %dx%d, want %s %dx%d", attempt, got, w, h, tc.wantType, tc.wantW, tc.wantH)
				}
				if cd := res.Header().Get("Content-Disposition"); !strings.HasPrefix(cd, "inline; filename=\"thumbnail.") {
					t.Errorf("%s: Content-Disposition %q", attempt, cd)
				}
				if got := bytes.Equal(res.Body.Bytes(), src); got != tc.wantOriginal {
					t.Errorf("%s: original returned: %v, want %v", attempt, got, tc.wantOriginal)
				}
			}
			_, err := f.db.Thumbnail(context.Background(), testServerName, id, tc.w, tc.h, tc.method)
			if (err == nil) != tc.wantRow {
				t.Errorf("cached thumbnail row: %v, want one: %v", err, tc.wantRow)
			}
		})
	}
}

func TestThumbnailErrors(t *testing.T) {
	f := newFixture(t, beforeLaterFreeze)
	img, _ := encode(t, "png", 10, 10)
	imgID := f.upload(t, img, "image/png", "")
	textID := f.upload(t, []byte("not an image"), "text/plain", "")
	liarID := f.upload(t, []byte("not an image"), "image/png", "")
	bombID := f.upload(t, pngBomb(t, 100000, 100000), "image/png", "bomb.png")
	base := "/_matrix/client/v1/media/thumbnail/" + testServerName + "/"
	for _, tc := range []struct {
		path    string
		status  int
		errcode string
	}{
		{base + imgID + "?height=32", 400, "M_MISSING_PARAM"},
		{base + imgID + "?width=-1&height=32", 400, "M_INVALID_PARAM"},
		{base + imgID + "?width=32&height=abc", 400, "M_INVALID_PARAM"},
		{base + imgID + "?width=32&height=32&method=stretch", 400, "M_INVALID_PARAM"},
		{base + imgID + "?width=32&height=32&animated=maybe", 400, "M_INVALID_PARAM"},
		{base + textID + "?width=32&height=32", 400, "M_UNKNOWN"},
		{base + liarID + "?width=32&height=32", 400, "M_UNKNOWN"},
		{base + bombID + "?width=32&height=32", 413, "M_TOO_LARGE"},
	} {
		res := f.do(t, f.alice, "GET", tc.path, nil, "")
		if res.Code != tc.status || res.errcode() != tc.errcode {
			t.Errorf("%s: %d %s, want %d %s", tc.path, res.Code, res.Body, tc.status, tc.errcode)
		}
	}
	res := f.do(t, "", "GET", "/_matrix/media/v3/thumbnail/"+testServerName+"/"+imgID+"?width=32&height=32", nil, "")
	if res.Code != 200 {
		t.Errorf("legacy thumbnail: %d %s", res.Code, res.Body)
	}
}

func TestThumbnailCacheIsBounded(t *testing.T) {
	f := newFixture(t, nil)
	img, ct := encode(t, "png", 100, 100)
	id := f.upload(t, img, ct, "")
	for i := range maxCachedThumbnails + 3 {
		path := fmt.Sprintf("/_matrix/client/v1/media/thumbnail/%s/%s?width=%d&height=20&method=crop", testServerName, id, 10+i)
		if res := f.do(t, f.bob, "GET", path, nil, ""); res.Code != 200 {
			t.Fatalf("thumbnail %d: %d %s", i, res.Code, res.Body)
		}
	}
	if n, err := f.db.ThumbnailCount(context.Background(), testServerName, id); err != nil || n != maxCachedThumbnails {
		t.Errorf("cached thumbnails: %d, %v; want %d", n, err, maxCachedThumbnails)
	}
}

// TestUnauthenticatedMediaFreeze: the deprecated unauthenticated endpoints serve media uploaded
// before media.unauthenticated_media_freeze and nothing uploaded at or after it; the default
// (empty) freezes them from the start. The authenticated endpoints serve everything.
func TestUnauthenticatedMediaFreeze(t *testing.T) {
	freeze := time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		freeze string
		at     time.Time
		legacy int
	}{
		{"default, frozen from the start", "", freeze.Add(-time.Hour), 404},
		{"before the freeze", freeze.Format(time.RFC3339), freeze.Add(-time.Hour), 200},
		{"at the freeze", freeze.Format(time.RFC3339), freeze, 404},
		{"after the freeze", freeze.Format(time.RFC3339), freeze.Add(time.Hour), 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *config.Media) { c.UnauthenticatedMediaFreeze = tc.freeze })
			f.srv.now = func() time.Time { return tc.at }
			img, ct := encode(t, "png", 40, 40)
			id := f.upload(t, img, ct, "")
			for _, path := range []string{
				"/_matrix/media/v3/download/" + testServerName + "/" + id,
				"/_matrix/media/r0/download/" + testServerName + "/" + id + "/name.png",
				"/_matrix/media/v3/thumbnail/" + testServerName + "/" + id + "?width=16&height=16",
			} {
				res := f.do(t, "", "GET", path, nil, "")
				if res.Code != tc.legacy || (res.Code == 404 && res.errcode() != "M_NOT_FOUND") {
					t.Errorf("%s: %d %s, want %d", path, res.Code, res.Body, tc.legacy)
				}
			}
			if res := f.do(t, f.bob, "GET", "/_matrix/client/v1/media/download/"+testServerName+"/"+id, nil, ""); res.Code != 200 {
				t.Errorf("authenticated download: %d", res.Code)
			}
		})
	}
}

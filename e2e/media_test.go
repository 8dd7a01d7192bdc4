package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
)

// mediaResp is a raw media response: the body is bytes, not necessarily JSON.
type mediaResp struct {
	Resp
	Header http.Header
}

// media sends body (may be nil) with the given Content-Type and returns the raw response.
func (s *Server) media(t testing.TB, token, method, path string, body []byte, contentType string) mediaResp {
	t.Helper()
	var rdr io.Reader
	if body != nil {
		rdr = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rdr)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	r := mediaResp{Resp: Resp{Status: resp.StatusCode, Raw: raw}, Header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(raw, &r.Body)
	}
	return r
}

// upload uploads content and returns its mxc:// URI.
func upload(t testing.TB, c *Client, content []byte, contentType, filename string) string {
	t.Helper()
	r := c.srv.media(t, c.Token, "POST", "/_matrix/media/v3/upload?filename="+url.QueryEscape(filename), content, contentType)
	if r.Status != 200 {
		t.Fatalf("upload %s: %d %s", filename, r.Status, r.Raw)
	}
	uri := str(r.Body, "content_uri")
	if !strings.HasPrefix(uri, "mxc://"+c.srv.Name+"/") {
		t.Fatalf("upload %s: content_uri %q", filename, uri)
	}
	return uri
}

// mxcPath turns mxc://server/id into "server/id" for the download and thumbnail paths.
func mxcPath(uri string) string { return strings.TrimPrefix(uri, "mxc://") }

// gradient returns a w x h test picture.
func gradient(w, h int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8((x ^ y) & 0xff), 255})
		}
	}
	return img
}

func encodePNG(t testing.TB, w, h int) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, gradient(w, h)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encodeJPEG(t testing.TB, w, h int) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, gradient(w, h), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageSize decodes the header of an image response.
func imageSize(t testing.TB, raw []byte) (int, int) {
	t.Helper()
	cfg, _, err := image.DecodeConfig(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("decode image: %v (%d bytes)", err, len(raw))
	}
	return cfg.Width, cfg.Height
}

// editConfig rewrites the server's configuration file; old must occur exactly once.
func (s *Server) editConfig(t testing.TB, old, new string) {
	t.Helper()
	raw, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), old); n != 1 {
		t.Fatalf("config: %q occurs %d times", old, n)
	}
	if err := os.WriteFile(s.ConfigPath, []byte(strings.Replace(string(raw), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMediaShareInRoom: alice uploads a PNG and a JPEG, sends them as m.image events; bob sees
// them through /sync and downloads them byte for byte over the authenticated API, with
// thumbnails of the requested sizes; the spec's errors and the download security headers hold.
func TestMediaShareInRoom(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}})
	join(bob, roomID)
	bobSync := newSyncer(bob, "")
	bobSync.once(0)

	pictures := []struct {
		name, contentType string
		content           []byte
		w, h              int
	}{
		{"sunset.png", "image/png", encodePNG(t, 300, 200), 300, 200},
		{"beach.jpg", "image/jpeg", encodeJPEG(t, 400, 300), 400, 300},
	}
	for i, p := range pictures {
		uri := upload(t, alice, p.content, p.contentType, p.name)
		eventID := str(sendTxn(alice, roomID, "m.room.message", fmt.Sprintf("img%d", i), map[string]any{
			"msgtype": "m.image", "body": p.name, "url": uri,
			"info": map[string]any{"mimetype": p.contentType, "size": len(p.content), "w": p.w, "h": p.h},
		}).Body, "event_id")
		bobSync.waitEvent(roomID, eventID)
		var got event
		for _, e := range bobSync.tl[roomID] {
			if evID(e) == eventID {
				got = e
			}
		}
		seenURI := str(obj(got, "content"), "url")
		if seenURI != uri {
			t.Fatalf("%s: bob's event has url %q, want %q", p.name, seenURI, uri)
		}

		r := srv.media(t, bob.Token, "GET", "/_matrix/client/v1/media/download/"+mxcPath(seenURI), nil, "")
		if r.Status != 200 || !bytes.Equal(r.Raw, p.content) {
			t.Fatalf("%s: download: %d, %d bytes (want %d)", p.name, r.Status, len(r.Raw), len(p.content))
		}
		if ct, cd := r.Header.Get("Content-Type"), r.Header.Get("Content-Disposition"); ct != p.contentType || cd != `inline; filename="`+p.name+`"` {
			t.Errorf("%s: Content-Type %q, Content-Disposition %q", p.name, ct, cd)
		}

		thumb := "/_matrix/client/v1/media/thumbnail/" + mxcPath(uri)
		r = srv.media(t, bob.Token, "GET", thumb+"?width=64&height=64&method=crop", nil, "")
		if w, h := imageSize(t, r.Raw); r.Status != 200 || w != 64 || h != 64 || r.Header.Get("Content-Type") != p.contentType {
			t.Errorf("%s: 64x64 crop: %d %s %dx%d", p.name, r.Status, r.Header.Get("Content-Type"), w, h)
		}
		r = srv.media(t, bob.Token, "GET", thumb+"?width=64&height=64&method=scale", nil, "")
		w, h := imageSize(t, r.Raw)
		if r.Status != 200 || max(w, h) != 64 || abs(w*p.h-h*p.w) > max(p.w, p.h) {
			t.Errorf("%s (%dx%d): 64x64 scale gave %dx%d: aspect ratio not kept", p.name, p.w, p.h, w, h)
		}
	}

	r := srv.media(t, bob.Token, "GET", "/_matrix/client/v1/media/download/"+srv.Name+"/doesNotExist", nil, "")
	expectErr(t, r.Resp, "unknown media", 404, "M_NOT_FOUND")
	r = srv.media(t, "", "GET", "/_matrix/client/v1/media/download/"+srv.Name+"/doesNotExist", nil, "")
	expectErr(t, r.Resp, "v1 download without a token", 401, "M_MISSING_TOKEN")

	uri := upload(t, alice, []byte("<html><script>alert(document.cookie)</script></html>"), "text/html", "evil.html")
	r = srv.media(t, bob.Token, "GET", "/_matrix/client/v1/media/download/"+mxcPath(uri), nil, "")
	if cd := r.Header.Get("Content-Disposition"); r.Status != 200 || !strings.HasPrefix(cd, "attachment") {
		t.Errorf("HTML upload: %d, Content-Disposition %q", r.Status, cd)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox;") || !strings.Contains(csp, "script-src 'none'") {
		t.Errorf("HTML upload: Content-Security-Policy %q", csp)
	}
	if r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("HTML upload: no X-Content-Type-Options: nosniff")
	}

	r = srv.media(t, bob.Token, "GET", "/_matrix/client/v1/media/preview_url?url="+url.QueryEscape("http://127.0.0.1:1/"), nil, "")
	expectErr(t, r.Resp, "preview_url when disabled", 404, "M_UNRECOGNIZED")
	r = srv.media(t, bob.Token, "GET", "/_matrix/client/v1/media/config", nil, "")
	if r.Status != 200 || r.Body["m.upload.size"] != float64(50<<20) {
		t.Errorf("media config: %d %s", r.Status, r.Raw)
	}
}

// TestMediaLimitsAndPreview: a configured upload limit gives 413 M_TOO_LARGE; URL previews,
// once enabled, refuse loopback addresses unless allow_private is set, and then preview a
// page served on loopback. Uploads survive restarts.
func TestMediaLimitsAndPreview(t *testing.T) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<html><head><meta property="og:title" content="Loopback page">
			<meta property="og:description" content="Served by the test"></head></html>`)
	}))
	defer site.Close()

	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	kept := upload(t, alice, []byte("before the restart"), "text/plain", "kept.txt")
	srv.Stop()
	srv.editConfig(t, "max_upload_bytes: 52428800", "max_upload_bytes: 4096")
	srv.editConfig(t, "    enabled: false", "    enabled: true")
	srv.Start()

	r := srv.media(t, alice.Token, "POST", "/_matrix/media/v3/upload", bytes.Repeat([]byte("x"), 5000), "application/octet-stream")
	expectErr(t, r.Resp, "upload over media.max_upload_bytes", 413, "M_TOO_LARGE")
	upload(t, alice, bytes.Repeat([]byte("x"), 4096), "application/octet-stream", "fits.bin")
	r = srv.media(t, alice.Token, "GET", "/_matrix/client/v1/media/download/"+mxcPath(kept), nil, "")
	if r.Status != 200 || string(r.Raw) != "before the restart" {
		t.Errorf("upload after restart: %d %q", r.Status, r.Raw)
	}

	preview := "/_matrix/client/v1/media/preview_url?url=" + url.QueryEscape(site.URL+"/")
	r = srv.media(t, alice.Token, "GET", preview, nil, "")
	expectErr(t, r.Resp, "preview of a loopback address without allow_private", 403, "M_FORBIDDEN")

	srv.Stop()
	srv.editConfig(t, "allow_private: false", "allow_private: true")
	srv.Start()
	r = srv.media(t, alice.Token, "GET", preview, nil, "")
	if r.Status != 200 || str(r.Body, "og:title") != "Loopback page" || str(r.Body, "og:description") != "Served by the test" {
		t.Errorf("preview with allow_private: %d %s", r.Status, r.Raw)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// BenchmarkMedia measures the real binary over loopback: upload and download throughput of a
// 5 MB file (MB/s), and the latency of a thumbnail of a 2000x1500 JPEG, generated (a new size
// each time) and cached.
//
//	go test ./e2e/ -run '^$' -bench Media -benchtime 20x
func BenchmarkMedia(b *testing.B) {
	srv := StartServer(b)
	alice := srv.Register(b, "alice")
	content := bytes.Repeat([]byte("0123456789abcdef"), 5_000_000/16)

	b.Run("Upload5MB", func(b *testing.B) {
		b.SetBytes(int64(len(content)))
		for b.Loop() {
			upload(b, alice, content, "application/octet-stream", "")
		}
	})
	uri := upload(b, alice, content, "application/octet-stream", "")
	b.Run("Download5MB", func(b *testing.B) {
		b.SetBytes(int64(len(content)))
		for b.Loop() {
			r := srv.media(b, alice.Token, "GET", "/_matrix/client/v1/media/download/"+mxcPath(uri), nil, "")
			if r.Status != 200 || len(r.Raw) != len(content) {
				b.Fatalf("download: %d, %d bytes", r.Status, len(r.Raw))
			}
		}
	})
	photo := encodeJPEG(b, 2000, 1500)
	b.Run("Thumbnail2000x1500/generate", func(b *testing.B) {
		// A new size each time, and a new copy of the photo before the server's cap on cached
		// thumbnails per item is reached, so that every request decodes, scales and stores.
		var thumb string
		i := 0
		for b.Loop() {
			if i%10 == 0 {
				b.StopTimer()
				thumb = "/_matrix/client/v1/media/thumbnail/" + mxcPath(upload(b, alice, photo, "image/jpeg", "photo.jpg"))
				b.StartTimer()
			}
			i++
			r := srv.media(b, alice.Token, "GET", fmt.Sprintf("%s?width=%d&height=240&method=scale", thumb, 200+i), nil, "")
			if r.Status != 200 {
				b.Fatalf("thumbnail: %d %s", r.Status, r.Raw)
			}
		}
	})
	cached := "/_matrix/client/v1/media/thumbnail/" + mxcPath(upload(b, alice, photo, "image/jpeg", "photo.jpg")) +
		"?width=320&height=240&method=scale"
	srv.media(b, alice.Token, "GET", cached, nil, "") // generated here, outside the timing
	b.Run("Thumbnail2000x1500/cached", func(b *testing.B) {
		for b.Loop() {
			r := srv.media(b, alice.Token, "GET", cached, nil, "")
			if r.Status != 200 {
				b.Fatalf("thumbnail: %d %s", r.Status, r.Raw)
			}
		}
	})
}

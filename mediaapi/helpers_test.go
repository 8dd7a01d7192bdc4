package mediaapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/netguard"
	"github.com/lattice-chat/lattice/storage"
)

const testServerName = "media.test"

// fixture is a media repository behind the real router and the body-limit wrapper, with
// SQLite storage in a temporary directory.
type fixture struct {
	srv   *Server
	db    *storage.DB
	h     http.Handler
	alice string // access tokens
	bob   string
}

// beforeLaterFreeze sets the unauthenticated media freeze far in the future, for the tests of
// what the deprecated unauthenticated endpoints serve of media uploaded before it.
func beforeLaterFreeze(c *config.Media) { c.UnauthenticatedMediaFreeze = "2999-01-01T00:00:00Z" }

func newFixture(t testing.TB, edit func(*config.Media)) *fixture {
	t.Helper()
	dir := t.TempDir()
	db, err := storage.Open(context.Background(), "sqlite:"+filepath.Join(dir, "lattice.db"), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := config.Default().Media
	cfg.Path = filepath.Join(dir, "media")
	if edit != nil {
		edit(&cfg)
	}
	var guard *netguard.Policy // the default blocklist
	if cfg.URLPreview.AllowPrivate {
		guard = &netguard.Policy{} // previews of the test's loopback sites
	}
	srv, err := New(cfg, testServerName, db, guard, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	router := mux.NewRouter().SkipClean(true).UseEncodedPath()
	srv.Register(router)
	router.NotFoundHandler = httputil.NotFoundHandler()
	f := &fixture{srv: srv, db: db, h: Limits(1<<20, router)}
	f.alice = f.addDevice(t, "@alice:"+testServerName)
	f.bob = f.addDevice(t, "@bob:"+testServerName)
	return f
}

// addDevice logs in a device of userID and returns its access token.
func (f *fixture) addDevice(t testing.TB, userID string) string {
	t.Helper()
	token := httputil.NewAccessToken()
	err := f.db.WithTx(context.Background(), func(tx *storage.Tx) error {
		return tx.UpsertDevice(context.Background(), storage.Device{UserID: userID, DeviceID: "DEV", CreatedTS: 1}, httputil.HashToken(token))
	})
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// response is a recorded response with its JSON body decoded when it has one.
type response struct {
	*httptest.ResponseRecorder
	json map[string]any
}

func (r response) errcode() string { s, _ := r.json["errcode"].(string); return s }

func (f *fixture) do(t testing.TB, token, method, path string, body io.Reader, contentType string) response {
	t.Helper()
	req := httptest.NewRequest(method, path, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	res := response{ResponseRecorder: rec}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(rec.Body.Bytes(), &res.json)
	}
	return res
}

// upload uploads content as alice and returns its media ID.
func (f *fixture) upload(t testing.TB, content []byte, contentType, filename string) string {
	t.Helper()
	path := "/_matrix/media/v3/upload"
	if filename != "" {
		path += "?filename=" + url.QueryEscape(filename)
	}
	res := f.do(t, f.alice, "POST", path, bytes.NewReader(content), contentType)
	if res.Code != 200 {
		t.Fatalf("upload: %d %s", res.Code, res.Body)
	}
	uri, _ := res.json["content_uri"].(string)
	id, ok := strings.CutPrefix(uri, "mxc://"+testServerName+"/")
	if !ok {
		t.Fatalf("content_uri %q", uri)
	}
	return id
}

// testImage is a w x h image with a gradient, so that scaling has something to average.
func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 128, 255})
		}
	}
	return img
}

// encode returns img in the format ("png", "jpeg", "gif" or "webp"; WebP comes from a file:
// Go has no WebP encoder) and its content type.
func encode(t testing.TB, format string, w, h int) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&buf, testImage(w, h))
	case "jpeg":
		err = jpeg.Encode(&buf, testImage(w, h), nil)
	case "gif":
		err = gif.Encode(&buf, testImage(w, h), nil)
	case "webp":
		// 150x103, from golang.org/x/image's test data (BSD licence).
		b, err := os.ReadFile("testdata/video-001.lossy.webp")
		if err != nil {
			t.Fatal(err)
		}
		return b, "image/webp"
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), "image/" + format
}

// pngBomb returns a small, valid 1x1 PNG whose header claims w x h pixels: decoding it would
// allocate 4*w*h bytes.
func pngBomb(t testing.TB, w, h uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// Signature (8 bytes), then the IHDR chunk: length (4), type (4), width, height, ..., CRC.
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// decodeSize returns the size of an encoded image.
func decodeSize(t testing.TB, b []byte) (int, int, string) {
	t.Helper()
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode thumbnail: %v", err)
	}
	return cfg.Width, cfg.Height, format
}

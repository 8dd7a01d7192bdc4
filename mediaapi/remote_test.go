package mediaapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
)

const remoteName = "remote.test"

// remoteItem is what fakeFetcher serves for one media ID.
type remoteItem struct {
	header  http.Header
	content []byte
	err     error
}

// fakeFetcher is a RemoteFetcher serving items from memory, counting calls. When gate is
// set, every download waits for it to be closed.
type fakeFetcher struct {
	mu    sync.Mutex
	items map[string]remoteItem // by "server/mediaID"
	calls int                   // guarded by mu
	waits []time.Duration       // the wait of every call; guarded by mu
	gate  chan struct{}
}

func (f *fakeFetcher) Download(ctx context.Context, server, mediaID string, wait time.Duration) (http.Header, io.ReadCloser, error) {
	f.mu.Lock()
	f.calls++
	f.waits = append(f.waits, wait)
	item, ok := f.items[server+"/"+mediaID]
	f.mu.Unlock()
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	if !ok {
		return nil, nil, httputil.Errorf(http.StatusNotFound, "M_NOT_FOUND", "media not found on %s", server)
	}
	if item.err != nil {
		return nil, nil, item.err
	}
	return item.header, io.NopCloser(bytes.NewReader(item.content)), nil
}

// Thumbnail answers like an origin without thumbnails, so that the original is fetched.
func (f *fakeFetcher) Thumbnail(context.Context, string, string, url.Values, time.Duration) (http.Header, io.ReadCloser, error) {
	return nil, nil, httputil.Errorf(http.StatusNotFound, "M_NOT_FOUND", "no thumbnail")
}

func (f *fakeFetcher) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func newRemoteFixture(t *testing.T, edit func(*config.Media)) (*fixture, *fakeFetcher) {
	t.Helper()
	f := newFixture(t, edit)
	fetcher := &fakeFetcher{items: map[string]remoteItem{}}
	f.srv.SetRemote(fetcher)
	return f, fetcher
}

// TestRemoteDownload fetches remote media once and serves it from the cache afterwards,
// through both the authenticated and the deprecated endpoints, and makes its thumbnails
// from the cached original.
func TestRemoteDownload(t *testing.T) {
	f, fetcher := newRemoteFixture(t, beforeLaterFreeze)
	img, _ := encode(t, "png", 200, 100)
	fetcher.items[remoteName+"/cat"] = remoteItem{
		header:  http.Header{"Content-Type": {"image/png"}, "Content-Disposition": {`attachment; filename*=utf-8''chat%20%C3%A9.png`}},
		content: img,
	}
	v1 := "/_matrix/client/v1/media/download/" + remoteName + "/cat"

	res := f.do(t, f.bob, "GET", v1+"?timeout_ms=1500", nil, "")
	if res.Code != 200 || !bytes.Equal(res.Body.Bytes(), img) {
		t.Fatalf("remote download: %d %.200q", res.Code, res.Body)
	}
	// Our own disposition (inline for PNG), with the origin's file name.
	if got := res.Header().Get("Content-Disposition"); got != "inline; filename*=utf-8''chat%20%C3%A9.png" {
		t.Errorf("Content-Disposition %q", got)
	}
	if got := res.Header().Get("Content-Type"); got != "image/png" {
		t.Errorf("Content-Type %q", got)
	}
	if fetcher.waits[0] != 1500*time.Millisecond {
		t.Errorf("timeout_ms reached the fetcher as %v", fetcher.waits[0])
	}
	m, fetched, err := f.db.RemoteMedia(context.Background(), remoteName, "cat")
	if err != nil || m.Size != int64(len(img)) || m.UploadName != "chat é.png" || fetched == 0 {
		t.Errorf("cache row: %+v fetched %d, %v", m, fetched, err)
	}

	for _, path := range []string{
		v1, v1 + "/other.png",
		"/_matrix/media/v3/download/" + remoteName + "/cat",
		"/_matrix/media/v3/download/" + remoteName + "/cat?allow_remote=false",
	} {
		token := f.bob
		if path[:14] == "/_matrix/media" {
			token = ""
		}
		res := f.do(t, token, "GET", path, nil, "")
		if res.Code != 200 || !bytes.Equal(res.Body.Bytes(), img) {
			t.Errorf("%s from the cache: %d", path, res.Code)
		}
	}
	res = f.do(t, f.bob, "GET", "/_matrix/client/v1/media/thumbnail/"+remoteName+"/cat?width=50&height=50&method=scale", nil, "")
	if res.Code != 200 {
		t.Fatalf("remote thumbnail: %d %s", res.Code, res.Body)
	}
	if w, h, _ := decodeSize(t, res.Body.Bytes()); w != 50 || h != 25 {
		t.Errorf("remote thumbnail is %dx%d, want 50x25", w, h)
	}
	if n, err := f.db.ThumbnailCount(context.Background(), remoteName, "cat"); err != nil || n != 1 {
		t.Errorf("cached thumbnails of the remote media: %d, %v", n, err)
	}
	if n := fetcher.callCount(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}

	// A local media ID equal to the remote one is another item.
	if res := f.do(t, f.bob, "GET", "/_matrix/client/v1/media/download/"+testServerName+"/cat", nil, ""); res.Code != 404 {
		t.Errorf("local media with the remote media's ID: %d", res.Code)
	}
	// Cached remote media is not served to other servers as ours.
	if _, _, err := f.srv.LocalMedia(context.Background(), "cat", url.Values{}); err == nil {
		t.Error("LocalMedia served cached remote media")
	}
}

// TestRemoteFetchOnce checks that concurrent requests for the same uncached media share one
// fetch, and that a request that gives up does not stop the fetch for the others.
func TestRemoteFetchOnce(t *testing.T) {
	f, fetcher := newRemoteFixture(t, nil)
	fetcher.gate = make(chan struct{})
	fetcher.items[remoteName+"/cat"] = remoteItem{header: http.Header{"Content-Type": {"text/plain"}}, content: []byte("meow")}
	path := "/_matrix/client/v1/media/download/" + remoteName + "/cat"
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := f.do(t, f.bob, "GET", path, nil, "")
			if res.Body.String() != "meow" {
				codes[i] = -res.Code
				return
			}
			codes[i] = res.Code
		}()
	}
	// All requests are waiting on the one fetch before it is let through.
	deadline := time.Now().Add(5 * time.Second)
	for fetcher.callCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(fetcher.gate)
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("request %d: %d", i, c)
		}
	}
	if got := fetcher.callCount(); got != 1 {
		t.Errorf("%d fetches for %d concurrent requests, want 1", got, n)
	}
}

// TestRemoteErrors checks the answers for remote media that cannot be served.
func TestRemoteErrors(t *testing.T) {
	f, fetcher := newRemoteFixture(t, func(c *config.Media) { c.MaxUploadBytes = 100; beforeLaterFreeze(c) })
	big := bytes.Repeat([]byte("x"), 101)
	fetcher.items[remoteName+"/big"] = remoteItem{header: http.Header{"Content-Type": {"text/plain"}}, content: big}
	fetcher.items[remoteName+"/declared"] = remoteItem{header: http.Header{"Content-Length": {strconv.Itoa(1 << 20)}}, content: []byte("x")}
	fetcher.items[remoteName+"/down"] = remoteItem{err: errors.New("connection refused")}
	fetcher.items[remoteName+"/slow"] = remoteItem{err: httputil.Errorf(http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED", "not yet")}
	fetcher.items[remoteName+"/exact"] = remoteItem{content: big[:100]}
	v1 := "/_matrix/client/v1/media/download/" + remoteName + "/"
	tests := []struct {
		path    string
		token   string
		status  int
		errcode string
	}{
		{v1 + "big", f.bob, 502, "M_TOO_LARGE"},
		{v1 + "declared", f.bob, 502, "M_TOO_LARGE"},
		{"/_matrix/client/v1/media/thumbnail/" + remoteName + "/big?width=1&height=1", f.bob, 502, "M_TOO_LARGE"},
		{v1 + "down", f.bob, 502, "M_UNKNOWN"},
		{v1 + "slow", f.bob, 504, "M_NOT_YET_UPLOADED"},
		{v1 + "missing", f.bob, 404, "M_NOT_FOUND"},
		{v1 + "missing?timeout_ms=soon", f.bob, 400, "M_INVALID_PARAM"},
		{v1 + "exact", "", 401, "M_MISSING_TOKEN"},
		{"/_matrix/media/v3/download/" + remoteName + "/exact?allow_remote=false", "", 404, "M_NOT_FOUND"},
		{"/_matrix/media/v3/download/" + remoteName + "/exact", "", 404, "M_NOT_FOUND"},
		{"/_matrix/media/v3/thumbnail/" + remoteName + "/exact?width=1&height=1", "", 404, "M_NOT_FOUND"},
		{"/_matrix/media/v3/download/" + remoteName + "/exact?allow_remote=maybe", "", 400, "M_INVALID_PARAM"},
		{"/_matrix/client/v1/media/thumbnail/" + remoteName + "/exact?width=1&height=1", f.bob, 400, "M_UNKNOWN"},
	}
	for _, tc := range tests {
		res := f.do(t, tc.token, "GET", tc.path, nil, "")
		if res.Code != tc.status || res.errcode() != tc.errcode {
			t.Errorf("%s: %d %s, want %d %s", tc.path, res.Code, res.Body, tc.status, tc.errcode)
		}
	}
	// Nothing too large was cached, and nothing was fetched for allow_remote=false or
	// without a token (the deprecated endpoints serve the cache only).
	if _, _, err := f.db.RemoteMedia(context.Background(), remoteName, "big"); err == nil {
		t.Error("content over the limit was cached")
	}
	if n := fetcher.callCount(); n != 7 {
		t.Errorf("%d fetches, want 7", n)
	}
	if res := f.do(t, "", "GET", "/_matrix/media/v3/download/"+remoteName+"/exact", nil, ""); res.Code != 200 || res.Body.Len() != 100 {
		t.Errorf("content of exactly the limit: %d", res.Code)
	}
}

// TestRemoteWithoutFederation serves remote media from the cache only.
func TestRemoteWithoutFederation(t *testing.T) {
	f := newFixture(t, nil)
	res := f.do(t, f.bob, "GET", "/_matrix/client/v1/media/download/"+remoteName+"/cat", nil, "")
	if res.Code != 404 || res.errcode() != "M_NOT_FOUND" {
		t.Errorf("remote media without federation: %d %s", res.Code, res.Body)
	}
}

// TestFederationSource checks what the federation API serves of local media: the content
// with its part headers, thumbnails, and the spec's errors.
func TestFederationSource(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	img, _ := encode(t, "png", 200, 100)
	id := f.upload(t, img, "image/png", "cat.png")
	h, body, err := f.srv.LocalMedia(ctx, id, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(body)
	body.Close()
	if !bytes.Equal(got, img) || h.Get("Content-Type") != "image/png" || h.Get("Content-Disposition") != `inline; filename="cat.png"` {
		t.Errorf("LocalMedia: %v, %d bytes", h, len(got))
	}
	h, body, err = f.srv.LocalThumbnail(ctx, id, url.Values{"width": {"40"}, "height": {"40"}, "method": {"crop"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(body)
	body.Close()
	if w, hh, _ := decodeSize(t, got); w != 40 || hh != 40 || h.Get("Content-Type") != "image/png" {
		t.Errorf("LocalThumbnail: %v, %dx%d", h, w, hh)
	}
	for name, q := range map[string]url.Values{
		"no width":        {"height": {"4"}},
		"bad timeout":     {"width": {"4"}, "height": {"4"}, "timeout_ms": {"-1"}},
		"unknown methods": {"width": {"4"}, "height": {"4"}, "method": {"stretch"}},
	} {
		if _, _, err := f.srv.LocalThumbnail(ctx, id, q); err == nil {
			t.Errorf("LocalThumbnail with %s: no error", name)
		}
	}
	for _, bad := range []string{"nope", "../etc", ""} {
		if _, _, err := f.srv.LocalMedia(ctx, bad, url.Values{}); err == nil {
			t.Errorf("LocalMedia(%q): no error", bad)
		}
	}
}

// TestRemoteInvalidNames: a path whose server name is no server name ("..", empty labels,
// port 0) or whose media ID leaves the spec's alphabet is 404 M_NOT_FOUND before any fetch.
func TestRemoteInvalidNames(t *testing.T) {
	f, fetcher := newRemoteFixture(t, nil)
	for _, p := range []string{
		"download/%2E%2E/abc", "download/../abc", "download/..:8448/abc", "download/a..b/abc",
		"download/.remote.test/abc", "download/remote.test:0/abc", "download/remote.test/%2E%2E",
		"download/remote.test/a.b", "thumbnail/%2E%2E/abc?width=1&height=1",
	} {
		res := f.do(t, f.bob, "GET", "/_matrix/client/v1/media/"+p, nil, "")
		if res.Code != 404 || res.errcode() != "M_NOT_FOUND" {
			t.Errorf("%s: %d %s, want 404 M_NOT_FOUND", p, res.Code, res.Body)
		}
	}
	if n := fetcher.callCount(); n != 0 {
		t.Errorf("%d fetches, want none", n)
	}
}

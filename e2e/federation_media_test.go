package e2e

import (
	"bytes"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
)

// TestFederationMedia: an image uploaded by a user of server A is downloaded byte for byte,
// and thumbnailed, by a user of server B through B, which fetches it from A over the
// federation media endpoints; once A is stopped, B still serves it from its cache.
func TestFederationMedia(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	img := encodePNG(t, 300, 200)
	uri := upload(t, alice, img, "image/png", "cat.png")
	if !strings.HasPrefix(uri, "mxc://"+a.Name+"/") {
		t.Fatalf("content_uri %q is not on %s", uri, a.Name)
	}
	v1 := "/_matrix/client/v1/media"
	download := v1 + "/download/" + mxcPath(uri)
	thumbnail := v1 + "/thumbnail/" + mxcPath(uri)

	r := b.media(t, bob.Token, "GET", download, nil, "")
	if r.Status != 200 || !bytes.Equal(r.Raw, img) {
		t.Fatalf("download of A's image through B: %d, %d bytes (want %d); %.300s", r.Status, len(r.Raw), len(img), r.Raw)
	}
	if ct, cd := r.Header.Get("Content-Type"), r.Header.Get("Content-Disposition"); ct != "image/png" || cd != `inline; filename="cat.png"` {
		t.Errorf("download through B: Content-Type %q, Content-Disposition %q", ct, cd)
	}
	r = b.media(t, bob.Token, "GET", thumbnail+"?width=64&height=64&method=scale", nil, "")
	if r.Status != 200 || r.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("thumbnail of A's image through B: %d %.300s", r.Status, r.Raw)
	}
	if w, h := imageSize(t, r.Raw); w != 64 || h != 43 {
		t.Errorf("thumbnail through B is %dx%d, want 64x43", w, h)
	}
	r = b.media(t, bob.Token, "GET", v1+"/download/"+a.Name+"/doesNotExist", nil, "")
	if r.Status != 404 || r.ErrCode() != "M_NOT_FOUND" {
		t.Errorf("unknown media of A through B: %d %s", r.Status, r.Raw)
	}

	// A is gone: B serves what it cached, makes new thumbnail sizes from it, and cannot
	// fetch anything else.
	a.Stop()
	r = b.media(t, bob.Token, "GET", download+"/renamed.png", nil, "")
	if r.Status != 200 || !bytes.Equal(r.Raw, img) || r.Header.Get("Content-Disposition") != `inline; filename="renamed.png"` {
		t.Fatalf("download from B's cache with A stopped: %d, %d bytes, %q", r.Status, len(r.Raw), r.Header.Get("Content-Disposition"))
	}
	// The deprecated unauthenticated endpoint is frozen (the default): media B cached after
	// the freeze counts as new, as the spec's "Authenticated media" says.
	if r := b.media(t, "", "GET", "/_matrix/media/v3/download/"+mxcPath(uri), nil, ""); r.Status != 404 || r.ErrCode() != "M_NOT_FOUND" {
		t.Errorf("deprecated download from B's cache: %d %.200s, want 404 M_NOT_FOUND", r.Status, r.Raw)
	}
	r = b.media(t, bob.Token, "GET", thumbnail+"?width=32&height=32&method=crop", nil, "")
	if r.Status != 200 {
		t.Fatalf("new thumbnail size with A stopped: %d %.300s", r.Status, r.Raw)
	}
	if w, h := imageSize(t, r.Raw); w != 32 || h != 32 {
		t.Errorf("crop thumbnail is %dx%d, want 32x32", w, h)
	}
	r = b.media(t, bob.Token, "GET", v1+"/download/"+a.Name+"/neverFetched", nil, "")
	if r.Status != 502 {
		t.Errorf("uncached media of a stopped server: %d %s, want 502", r.Status, r.Raw)
	}
}

// TestFederationMediaUnicodeName: a file name outside ASCII survives the trip from A to B:
// A's federation answer carries it in the content part's Content-Disposition (RFC 6266
// filename*=utf-8”...), and B serves it to its client the same way.
func TestFederationMediaUnicodeName(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	name := "кот в шляпе 🐈.png"
	uri := upload(t, alice, encodePNG(t, 30, 20), "image/png", name)
	r := b.media(t, bob.Token, "GET", "/_matrix/client/v1/media/download/"+mxcPath(uri), nil, "")
	if r.Status != 200 {
		t.Fatalf("download of A's image through B: %d %.300s", r.Status, r.Raw)
	}
	want := "inline; filename*=utf-8''" + url.PathEscape(name)
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Disposition"))
	if err != nil || params["filename"] != name {
		t.Errorf("download through B: Content-Disposition %q (file name %q, %v), want the name %q (%s)",
			r.Header.Get("Content-Disposition"), params["filename"], err, name, want)
	}
}

// TestFederationMediaRemoteThumbnail: a thumbnail of another server's media that B has not
// cached comes from that server's thumbnail endpoints, which every server can serve even
// when its original is too large to fetch: the authenticated GET /_matrix/federation/v1/
// media/thumbnail/{mediaId} (multipart), or, from a server that predates Matrix 1.11 and
// answers it 404 M_UNRECOGNIZED, the deprecated GET /_matrix/media/v3/thumbnail/{serverName}/
// {mediaId}. The fake server serves a thumbnail unlike any Lattice would make of its
// original, so the bytes tell which was used.
func TestFederationMediaRemoteThumbnail(t *testing.T) {
	ca := newTestCA(t)
	lat := startFederatedServer(t, ca)
	fake := startFakeHomeserver(t, ca)
	bob := lat.Register(t, "bob")
	original, thumb := encodePNG(t, 300, 200), encodePNG(t, 17, 11)
	fake.setExtra(func(w http.ResponseWriter, r *http.Request) bool {
		p := r.URL.Path
		switch {
		case p == "/_matrix/federation/v1/media/thumbnail/modern":
			mw := multipart.NewWriter(w)
			w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
			meta, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
			meta.Write([]byte("{}"))
			part, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"image/png"}})
			part.Write(thumb)
			mw.Close()
		case strings.HasPrefix(p, "/_matrix/federation/v1/media/"):
			writeJSON(w, 404, map[string]string{"errcode": "M_UNRECOGNIZED", "error": "unrecognized request"})
		case p == "/_matrix/media/v3/thumbnail/"+string(fake.name)+"/old":
			w.Header().Set("Content-Type", "image/png")
			w.Write(thumb)
		case strings.HasPrefix(p, "/_matrix/media/v3/download/"+string(fake.name)+"/"):
			w.Header().Set("Content-Type", "image/png")
			w.Write(original)
		default:
			return false
		}
		return true
	})
	for _, id := range []string{"modern", "old"} {
		r := lat.media(t, bob.Token, "GET", "/_matrix/client/v1/media/thumbnail/"+string(fake.name)+"/"+id+"?width=32&height=32&method=scale", nil, "")
		if r.Status != 200 || !bytes.Equal(r.Raw, thumb) {
			t.Errorf("thumbnail of %s media through Lattice: %d, %d bytes (the fake's thumbnail has %d); fake saw %v",
				id, r.Status, len(r.Raw), len(thumb), fake.requestsLike("/media/"))
		}
	}
	if len(fake.requestsLike("/_matrix/federation/v1/media/thumbnail/old")) == 0 {
		t.Errorf("Lattice never tried the authenticated thumbnail endpoint first; fake saw %v", fake.requestsLike("/media/"))
	}
}

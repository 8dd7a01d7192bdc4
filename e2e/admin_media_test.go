package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mediaFile is where the media store keeps the content of a local media item.
func mediaFile(srv *Server, uri string) string {
	id := uri[strings.LastIndex(uri, "/")+1:]
	return filepath.Join(srv.DataDir, "media", "local", id[0:2], id[2:4], id)
}

// thumbnailDir is where the media store keeps the thumbnails of a local media item.
func thumbnailDir(srv *Server, uri string) string {
	id := uri[strings.LastIndex(uri, "/")+1:]
	return filepath.Join(srv.DataDir, "media", "thumbnails", "local", id[0:2], id[2:4], id)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestAdminMedia: the media admin API of Synapse: information, quarantine (by ID, room and
// user) that makes downloads and thumbnails 404, protection from quarantine, deletion by ID,
// by date and size and by user that removes the files, the media of a room and of a user.
func TestAdminMedia(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	const base = "/_synapse/admin/v1"

	img := upload(t, alice, encodePNG(t, 64, 64), "image/png", "pic.png")
	small := upload(t, alice, []byte("small"), "text/plain", "small.txt")
	big := upload(t, alice, bytes.Repeat([]byte("x"), 5000), "text/plain", "big.txt")
	avatar := upload(t, alice, bytes.Repeat([]byte("a"), 3000), "image/png", "avatar.png")
	expectOK(t, call(alice, "PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/avatar_url", map[string]any{"avatar_url": avatar}), "set avatar")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	sendTxn(alice, room, "m.room.message", "m1", map[string]any{"msgtype": "m.image", "body": "pic", "url": img, "info": map[string]any{"thumbnail_url": img}})
	sendTxn(alice, room, "m.room.message", "m2", map[string]any{"msgtype": "m.file", "body": "far", "url": "mxc://remote.example/abcdef"})

	download := func(uri string) int {
		return srv.media(t, alice.Token, "GET", "/_matrix/client/v1/media/download/"+mxcPath(uri), nil, "").Status
	}
	thumbnail := func(uri string) int {
		return srv.media(t, alice.Token, "GET", "/_matrix/client/v1/media/thumbnail/"+mxcPath(uri)+"?width=32&height=32&method=scale", nil, "").Status
	}
	if thumbnail(img) != 200 {
		t.Fatalf("thumbnail before quarantine")
	}

	// Information.
	r := call(admin, "GET", base+"/media/"+mxcPath(img), nil)
	info := obj(r.Body, "media_info")
	if str(info, "media_origin") != srv.Name || str(info, "user_id") != alice.UserID || str(info, "media_type") != "image/png" ||
		str(info, "upload_name") != "pic.png" || info["media_length"] == nil || info["quarantined_by"] != nil ||
		info["safe_from_quarantine"] != false || str(info, "media_id") != strings.TrimPrefix(mxcPath(img), srv.Name+"/") {
		t.Errorf("media info: %s", r.Raw)
	}
	expectErr(t, call(admin, "GET", base+"/media/"+srv.Name+"/nope", nil), "unknown media", 404, "M_NOT_FOUND")
	expectErr(t, call(admin, "GET", base+"/media/remote.example/abcdef", nil), "uncached remote media", 404, "M_NOT_FOUND")

	// The media of a room.
	r = call(admin, "GET", base+"/room/"+esc(room)+"/media", nil)
	if fmt.Sprint(r.Body["local"]) != fmt.Sprint([]any{img}) || fmt.Sprint(r.Body["remote"]) != "[mxc://remote.example/abcdef]" {
		t.Errorf("room media: %s", r.Raw)
	}
	expectErr(t, call(admin, "GET", base+"/room/"+esc("!nope:"+srv.Name)+"/media", nil), "unknown room", 404, "M_NOT_FOUND")

	// Quarantine by ID: downloads and thumbnails are 404 until it is lifted.
	expectOK(t, call(admin, "POST", base+"/media/quarantine/"+mxcPath(img), map[string]any{}), "quarantine")
	if d, th := download(img), thumbnail(img); d != 404 || th != 404 {
		t.Errorf("quarantined media: download %d, thumbnail %d", d, th)
	}
	const bypass = "?admin_unsafely_bypass_quarantine=true"
	if a, b := srv.media(t, admin.Token, "GET", "/_matrix/client/v1/media/download/"+mxcPath(img)+bypass, nil, "").Status,
		srv.media(t, alice.Token, "GET", "/_matrix/client/v1/media/download/"+mxcPath(img)+bypass, nil, "").Status; a != 200 || b != 404 {
		t.Errorf("bypassing the quarantine: admin %d, non-admin %d; want 200, 404", a, b)
	}
	if r := call(admin, "GET", base+"/media/"+mxcPath(img), nil); str(obj(r.Body, "media_info"), "quarantined_by") != admin.UserID {
		t.Errorf("quarantined_by: %s", r.Raw)
	}
	expectOK(t, call(admin, "POST", base+"/media/unquarantine/"+mxcPath(img), map[string]any{}), "unquarantine")
	if download(img) != 200 {
		t.Errorf("unquarantined media is not served")
	}
	expectErr(t, call(admin, "POST", base+"/media/quarantine/"+srv.Name+"/nope", map[string]any{}), "quarantine unknown", 404, "M_NOT_FOUND")

	// Protected media is not quarantined with its room; unprotected, it is.
	id := func(uri string) string { return uri[strings.LastIndex(uri, "/")+1:] }
	expectOK(t, call(admin, "POST", base+"/media/protect/"+id(img), map[string]any{}), "protect")
	r = call(admin, "POST", base+"/room/"+esc(room)+"/media/quarantine", map[string]any{})
	if r.Body["num_quarantined"] != float64(0) || download(img) != 200 {
		t.Errorf("room quarantine of protected media: %s", r.Raw)
	}
	expectOK(t, call(admin, "POST", base+"/media/unprotect/"+id(img), map[string]any{}), "unprotect")
	r = call(admin, "POST", base+"/room/"+esc(room)+"/media/quarantine", map[string]any{})
	if r.Body["num_quarantined"] != float64(1) || download(img) != 404 {
		t.Errorf("room quarantine: %s", r.Raw)
	}
	expectOK(t, call(admin, "POST", base+"/media/unquarantine/"+mxcPath(img), map[string]any{}), "unquarantine")
	expectErr(t, call(admin, "POST", base+"/media/protect/nope", map[string]any{}), "protect unknown", 404, "M_NOT_FOUND")

	// Quarantine of a user's media, the protected avatar left out.
	expectOK(t, call(admin, "POST", base+"/media/protect/"+id(avatar), map[string]any{}), "protect avatar")
	r = call(admin, "POST", base+"/user/"+esc(alice.UserID)+"/media/quarantine", map[string]any{})
	if r.Body["num_quarantined"] != float64(3) || download(small) != 404 || download(avatar) != 200 {
		t.Errorf("user quarantine: %s", r.Raw)
	}
	for _, u := range []string{img, small, big} {
		expectOK(t, call(admin, "POST", base+"/media/unquarantine/"+mxcPath(u), map[string]any{}), "unquarantine")
	}
	expectOK(t, call(admin, "POST", base+"/media/unprotect/"+id(avatar), map[string]any{}), "unprotect avatar")
	expectErr(t, call(admin, "POST", base+"/user/"+esc("@nobody:"+srv.Name)+"/media/quarantine", map[string]any{}), "unknown user", 404, "M_NOT_FOUND")

	// A user's media: newest first by default, paged, sorted on request.
	r = call(admin, "GET", base+"/users/"+esc(alice.UserID)+"/media?limit=2", nil)
	if len(list(r.Body, "media")) != 2 || r.Body["total"] != float64(4) || r.Body["next_token"] != float64(2) {
		t.Errorf("user media page: %s", r.Raw)
	}
	r = call(admin, "GET", base+"/users/"+esc(alice.UserID)+"/media?order_by=media_length&dir=b", nil)
	if m := list(r.Body, "media"); len(m) != 4 || str(m[0], "media_id") != id(big) || str(m[3], "media_id") != id(small) ||
		str(m[0], "media_type") != "text/plain" || m[0]["media_length"] != float64(5000) || str(m[0], "upload_name") != "big.txt" ||
		m[0]["created_ts"] == nil || m[0]["safe_from_quarantine"] != false || r.Body["next_token"] != nil {
		t.Errorf("user media by size: %s", r.Raw)
	}
	expectErr(t, call(admin, "GET", base+"/users/"+esc(alice.UserID)+"/media?order_by=colour", nil), "bad order_by", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "GET", base+"/users/"+esc("@x:remote.example")+"/media", nil), "remote user", 400, "M_INVALID_PARAM")

	// Deletion by ID removes the content and the thumbnails.
	if !exists(mediaFile(srv, img)) || !exists(thumbnailDir(srv, img)) {
		t.Fatalf("media files not where expected: %s", mediaFile(srv, img))
	}
	r = call(admin, "DELETE", base+"/media/"+mxcPath(img), nil)
	if fmt.Sprint(r.Body["deleted_media"]) != "["+id(img)+"]" || r.Body["total"] != float64(1) {
		t.Errorf("delete: %s", r.Raw)
	}
	if download(img) != 404 || thumbnail(img) != 404 || exists(mediaFile(srv, img)) {
		t.Errorf("deleted media is still there")
	}
	if entries, _ := os.ReadDir(thumbnailDir(srv, img)); len(entries) != 0 {
		t.Errorf("thumbnails of deleted media remain: %v", entries)
	}
	expectErr(t, call(admin, "DELETE", base+"/media/"+mxcPath(img), nil), "delete again", 404, "M_NOT_FOUND")
	expectErr(t, call(admin, "DELETE", base+"/media/remote.example/abcdef", nil), "delete remote", 400, "M_INVALID_PARAM")

	// Deletion by date and size; avatars are kept unless keep_profiles=false.
	now := time.Now().Add(time.Minute).UnixMilli()
	r = call(admin, "POST", fmt.Sprintf("%s/media/delete?before_ts=%d&size_gt=1000", base, now), map[string]any{})
	if fmt.Sprint(r.Body["deleted_media"]) != "["+id(big)+"]" || r.Body["total"] != float64(1) {
		t.Errorf("delete by date and size: %s", r.Raw)
	}
	if download(big) != 404 || exists(mediaFile(srv, big)) || download(avatar) != 200 || download(small) != 200 {
		t.Errorf("delete by date and size removed the wrong media")
	}
	r = call(admin, "POST", fmt.Sprintf("%s/media/%s/delete?before_ts=%d&size_gt=1000&keep_profiles=false", base, srv.Name, now), map[string]any{})
	if fmt.Sprint(r.Body["deleted_media"]) != "["+id(avatar)+"]" || download(avatar) != 404 {
		t.Errorf("delete with keep_profiles=false: %s", r.Raw)
	}
	expectErr(t, call(admin, "POST", base+"/media/delete", map[string]any{}), "no before_ts", 400, "M_MISSING_PARAM")
	expectErr(t, call(admin, "POST", base+"/media/delete?before_ts=1234", map[string]any{}), "before_ts in seconds", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "POST", fmt.Sprintf("%s/media/delete?before_ts=%d&size_gt=x", base, now), map[string]any{}), "bad size_gt", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "POST", fmt.Sprintf("%s/media/elsewhere.org/delete?before_ts=%d", base, now), map[string]any{}), "delete remote by date", 400, "M_INVALID_PARAM")

	// Deletion by date goes by the last access: media served since before_ts stays.
	stale := upload(t, alice, bytes.Repeat([]byte("s"), 2000), "text/plain", "stale.txt")
	fresh := upload(t, alice, bytes.Repeat([]byte("f"), 2000), "text/plain", "fresh.txt")
	time.Sleep(5 * time.Millisecond) // so that both were created strictly before mark
	mark := time.Now().UnixMilli()
	time.Sleep(5 * time.Millisecond)
	if download(fresh) != 200 {
		t.Fatalf("download fresh")
	}
	if r := call(admin, "GET", base+"/media/"+mxcPath(fresh), nil); obj(r.Body, "media_info")["last_access_ts"] == nil ||
		obj(r.Body, "media_info")["last_access_ts"].(float64) < float64(mark) {
		t.Errorf("last_access_ts after a download: %s", r.Raw)
	}
	r = call(admin, "POST", fmt.Sprintf("%s/media/delete?before_ts=%d&size_gt=1000", base, mark), map[string]any{})
	if fmt.Sprint(r.Body["deleted_media"]) != "["+id(stale)+"]" || download(fresh) != 200 {
		t.Errorf("delete by last access: %s", r.Raw)
	}

	// Deletion of a user's media.
	mine := upload(t, bob, []byte("bob's"), "text/plain", "bob.txt")
	r = call(admin, "DELETE", base+"/users/"+esc(bob.UserID)+"/media", nil)
	if fmt.Sprint(r.Body["deleted_media"]) != "["+id(mine)+"]" || r.Body["total"] != float64(1) || download(mine) != 404 || exists(mediaFile(srv, mine)) {
		t.Errorf("delete user media: %s", r.Raw)
	}
	if r := call(admin, "GET", base+"/users/"+esc(bob.UserID)+"/media", nil); r.Body["total"] != float64(0) {
		t.Errorf("bob's media after deletion: %s", r.Raw)
	}

	// The remote media cache (empty here).
	r = call(admin, "POST", fmt.Sprintf("%s/purge_media_cache?before_ts=%d", base, now), map[string]any{})
	if r.Body["deleted"] != float64(0) {
		t.Errorf("purge_media_cache: %s", r.Raw)
	}

	// Non-admins are refused.
	for _, rt := range [][2]string{
		{"GET", "/media/" + mxcPath(small)}, {"DELETE", "/media/" + mxcPath(small)},
		{"POST", "/media/quarantine/" + mxcPath(small)}, {"POST", "/media/unquarantine/" + mxcPath(small)},
		{"POST", "/media/protect/" + id(small)}, {"POST", "/media/unprotect/" + id(small)},
		{"POST", fmt.Sprintf("/media/delete?before_ts=%d", now)}, {"POST", fmt.Sprintf("/media/%s/delete?before_ts=%d", srv.Name, now)},
		{"POST", fmt.Sprintf("/purge_media_cache?before_ts=%d", now)},
		{"GET", "/room/" + esc(room) + "/media"}, {"POST", "/room/" + esc(room) + "/media/quarantine"},
		{"POST", "/quarantine_media/" + esc(room)}, {"POST", "/user/" + esc(alice.UserID) + "/media/quarantine"},
		{"GET", "/users/" + esc(alice.UserID) + "/media"}, {"DELETE", "/users/" + esc(alice.UserID) + "/media"},
	} {
		expectErr(t, call(bob, rt[0], base+rt[1], map[string]any{}), "non-admin "+rt[0]+" "+rt[1], 403, "M_FORBIDDEN")
	}
	if download(small) != 200 {
		t.Errorf("a non-admin changed media")
	}
}

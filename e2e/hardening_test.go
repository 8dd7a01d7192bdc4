package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestResetPasswordRevokesTokensAtOnce: `lattice reset-password` is another process writing the
// database; the running server must refuse the old access token within a fraction of a second
// (its caches look at the database's cache generations every 200 ms), not after 30 s.
func TestResetPasswordRevokesTokensAtOnce(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	expectOK(t, whoami(alice), "whoami before the reset") // the token is now cached
	expectOK(t, whoami(alice), "whoami before the reset, again")
	out, err := exec.Command(binary, "reset-password", "--config", srv.ConfigPath, "--user", "alice", "--password", "a brand new password").CombinedOutput()
	if err != nil {
		t.Fatalf("reset-password: %v: %s", err, out)
	}
	// The server reads the caches' generations at most every 200 ms.
	deadline := time.Now().Add(time.Second)
	for whoami(alice).Status == 200 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	expectErr(t, whoami(alice), "whoami with the token reset-password revoked", 401, "M_UNKNOWN_TOKEN")
}

// TestPublishRoomNeedsPower: publishing a room in the directory (PUT /directory/list/room)
// takes the power to send m.room.canonical_alias, as the reference server requires; a
// joined member without it gets 403 M_FORBIDDEN, a server admin may publish any room.
func TestPublishRoomNeedsPower(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, room)
	path := "/_matrix/client/v3/directory/list/room/" + esc(room)
	visibility := func() string {
		return str(anon(t, srv, "GET", path, nil).Body, "visibility")
	}

	expectErr(t, call(bob, "PUT", path, map[string]any{"visibility": "public"}), "member without power publishes", 403, "M_FORBIDDEN")
	if v := visibility(); v != "private" {
		t.Errorf("after the refused publish: visibility %q, want private", v)
	}
	expectOK(t, call(alice, "PUT", path, map[string]any{"visibility": "public"}), "room creator publishes")
	expectErr(t, call(bob, "PUT", path, map[string]any{"visibility": "private"}), "member without power unpublishes", 403, "M_FORBIDDEN")
	if v := visibility(); v != "public" {
		t.Errorf("after the refused unpublish: visibility %q, want public", v)
	}

	// Given the power to send m.room.canonical_alias, bob may.
	pl := stateEvent(alice, room, "m.room.power_levels", "").Body
	pl["events"].(map[string]any)["m.room.canonical_alias"] = 0
	expectOK(t, putState(alice, room, "m.room.power_levels", "", pl), "lower canonical_alias to 0")
	expectOK(t, call(bob, "PUT", path, map[string]any{"visibility": "private"}), "member with power unpublishes")

	// A server admin who is not in the room.
	out, err := exec.Command(binary, "create-account", "--config", srv.ConfigPath, "--user", "root", "--password", testPassword, "--admin").CombinedOutput()
	if err != nil {
		t.Fatalf("create-account: %v: %s", err, out)
	}
	root := srv.Login(t, "root")
	expectOK(t, call(root, "PUT", path, map[string]any{"visibility": "public"}), "server admin publishes")
	if v := visibility(); v != "public" {
		t.Errorf("after the admin's publish: visibility %q, want public", v)
	}
}

// TestUnauthenticatedMediaFrozen: the deprecated unauthenticated /_matrix/media/v3/download and
// /thumbnail endpoints do not serve media uploaded after the freeze (the spec's content
// repository, "Authenticated media": servers SHOULD freeze them); by default this server has
// been frozen from the start. An operator can set the freeze to a later time, and media
// uploaded before it is then served there.
func TestUnauthenticatedMediaFrozen(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	uri := upload(t, alice, encodePNG(t, 64, 64), "image/png", "cat.png")
	legacyDownload := "/_matrix/media/v3/download/" + mxcPath(uri)
	legacyThumbnail := "/_matrix/media/v3/thumbnail/" + mxcPath(uri) + "?width=32&height=32"
	for _, path := range []string{legacyDownload, legacyDownload + "/named.png", legacyThumbnail} {
		r := srv.media(t, "", "GET", path, nil, "")
		expectErr(t, r.Resp, "frozen "+path, 404, "M_NOT_FOUND")
	}
	if r := srv.media(t, alice.Token, "GET", "/_matrix/client/v1/media/download/"+mxcPath(uri), nil, ""); r.Status != 200 {
		t.Errorf("authenticated download: %d", r.Status)
	}

	srv.Stop()
	srv.editConfig(t, `unauthenticated_media_freeze: ""`, `unauthenticated_media_freeze: "2999-01-01T00:00:00Z"`)
	srv.Start()
	for _, path := range []string{legacyDownload, legacyThumbnail} {
		if r := srv.media(t, "", "GET", path, nil, ""); r.Status != 200 {
			t.Errorf("%s uploaded before a later freeze: %d %s", path, r.Status, r.Raw)
		}
	}
}

// TestMediaSweepOnStart: an upload cut short by a crash leaves a temporary file in the media
// directory, or a file whose database row was never committed; the server removes them when
// it starts (once they are old enough not to be another process's upload in progress), and
// keeps the files of committed uploads.
func TestMediaSweepOnStart(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	content := []byte("committed upload")
	uri := upload(t, alice, content, "text/plain", "kept.txt")
	srv.Kill()

	media := filepath.Join(srv.DataDir, "media")
	old := time.Now().Add(-time.Hour)
	var leftovers []string
	for _, rel := range []string{"local/ab/cd/.upload-1234", "local/ab/cd/abcdNeverCommitted"} {
		path := filepath.Join(media, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("half an upload"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
		leftovers = append(leftovers, path)
	}
	srv.Start()
	deadline := time.Now().Add(10 * time.Second)
	for _, path := range leftovers {
		for {
			if _, err := os.Stat(path); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is still there after the restart", path)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if r := srv.media(t, alice.Token, "GET", "/_matrix/client/v1/media/download/"+mxcPath(uri), nil, ""); r.Status != 200 || string(r.Raw) != string(content) {
		t.Errorf("committed upload after the sweep: %d %q", r.Status, r.Raw)
	}
}

// TestUserDirectoryLongTerm: a search term longer than any user ID or display name is no
// server error (the spec gives this endpoint no 400); it finds nobody.
func TestUserDirectoryLongTerm(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	for _, n := range []int{300, 60000} {
		r := call(alice, "POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": strings.Repeat("a", n)})
		expectOK(t, r, fmt.Sprintf("search term of %d characters", n))
		if res := r.Body["results"]; res == nil || len(res.([]any)) != 0 {
			t.Errorf("search term of %d characters: results %v", n, res)
		}
	}
	r := call(alice, "POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": "alic"})
	expectOK(t, r, "short search term")
}

package e2e

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"
)

// TestFailedLoginsLimited: after the burst of wrong passwords (5 by default) the account's
// logins get 429 M_LIMIT_EXCEEDED with retry_after_ms, even with the right password.
func TestFailedLoginsLimited(t *testing.T) {
	srv := StartServer(t)
	srv.Register(t, "alice")
	login := func(password string) Resp {
		return srv.Do(t, "", "POST", "/_matrix/client/v3/login", map[string]any{
			"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": password})
	}
	for i := 0; i < 5; i++ {
		if r := login("wrong password"); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
			t.Fatalf("wrong password %d: %d %s", i, r.Status, r.Raw)
		}
	}
	r := login("correct horse battery")
	if r.Status != 429 || r.ErrCode() != "M_LIMIT_EXCEEDED" || r.Body["retry_after_ms"] == nil {
		t.Fatalf("login after the burst: %d %s", r.Status, r.Raw)
	}
	// Other accounts are not affected.
	srv.Register(t, "bob")
	srv.Login(t, "bob")
}

// TestClientStartupEndpoints: endpoints Element and other clients call at start answer
// rather than 404.
func TestClientStartupEndpoints(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	if r := alice.MustDo("GET", "/_matrix/client/v3/account/3pid", nil); r.Body["threepids"] == nil {
		t.Fatalf("3pid: %s", r.Raw)
	}
	alice.MustDo("GET", "/_matrix/client/v3/thirdparty/protocols", nil)
	alice.MustDo("GET", "/_matrix/client/v3/voip/turnServer", nil)
	alice.MustDo("GET", "/_matrix/client/v3/pushrules/", nil)
	alice.MustDo("GET", "/_matrix/client/v3/capabilities", nil)
	alice.MustDo("GET", "/_matrix/client/v1/media/config", nil)
}

// TestNoGuessedWellKnown: without client_api.public_base_url the server advertises no base
// URL (a guess like https://server_name would move clients off the URL that works).
func TestNoGuessedWellKnown(t *testing.T) {
	srv := StartServer(t)
	if r := srv.Do(t, "", "GET", "/.well-known/matrix/client", nil); r.Status != 404 {
		t.Fatalf("well-known: %d %s", r.Status, r.Raw)
	}
	srv.Register(t, "alice")
	r := srv.Do(t, "", "POST", "/_matrix/client/v3/login", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "correct horse battery"})
	if r.Status != 200 || r.Body["well_known"] != nil {
		t.Fatalf("login: %d %s", r.Status, r.Raw)
	}
}

// TestTimestampToEvent: the nearest visible event before or after a time.
func TestTimestampToEvent(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{})
	first := alice.Send(room, "one")
	ev := alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(first), nil)
	ts := int64(ev.Body["origin_server_ts"].(float64))
	base := "/_matrix/client/v1/rooms/" + esc(room) + "/timestamp_to_event?ts="
	if r := alice.MustDo("GET", base+fmt.Sprint(ts)+"&dir=f", nil); r.Body["event_id"] != first {
		t.Fatalf("forwards from the message's time: %s", r.Raw)
	}
	if r := alice.Do("GET", base+fmt.Sprint(ts+3600000)+"&dir=f", nil); r.Status != 404 {
		t.Fatalf("nothing after: %d %s", r.Status, r.Raw)
	}
	if r := alice.MustDo("GET", base+fmt.Sprint(ts+3600000)+"&dir=b", nil); r.Body["event_id"] == nil {
		t.Fatalf("backwards: %s", r.Raw)
	}
	if r := alice.Do("GET", base+"x&dir=f", nil); r.Status != 400 {
		t.Fatalf("bad ts: %d", r.Status)
	}
}

// TestAdminResetPassword: `lattice reset-password` on a running server; the new password
// logs in, the old one no longer does.
func TestAdminResetPassword(t *testing.T) {
	srv := StartServer(t)
	srv.Register(t, "alice")
	out, err := exec.Command(binary, "reset-password", "--config", srv.ConfigPath, "--user", "alice", "--password", "a brand new password").CombinedOutput()
	if err != nil {
		t.Fatalf("reset-password: %v: %s", err, out)
	}
	login := func(password string) Resp {
		return srv.Do(t, "", "POST", "/_matrix/client/v3/login", map[string]any{
			"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": password})
	}
	if r := login("correct horse battery"); r.Status != 403 {
		t.Fatalf("old password: %d %s", r.Status, r.Raw)
	}
	if r := login("a brand new password"); r.Status != 200 {
		t.Fatalf("new password: %d %s", r.Status, r.Raw)
	}
}

// TestUIAPasswordsLimited: the password stage of user-interactive authentication shares the
// account's allowance of wrong passwords with /login, so a stolen access token gives no
// faster way to guess the password: after 5 wrong ones, even the right one gets 429
// M_LIMIT_EXCEEDED, and so does /login.
func TestUIAPasswordsLimited(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	other := srv.Login(t, "alice")
	path := "/_matrix/client/v3/devices/" + other.DeviceID
	for i := 0; i < 5; i++ {
		r := uiaPassword(alice, "DELETE", path, nil, "wrong password")
		if r.Status != 401 || r.ErrCode() != "M_FORBIDDEN" {
			t.Fatalf("wrong password %d: %d %s, want 401 M_FORBIDDEN", i, r.Status, r.Raw)
		}
	}
	r := uiaPassword(alice, "DELETE", path, nil, "correct horse battery")
	if r.Status != 429 || r.ErrCode() != "M_LIMIT_EXCEEDED" || r.Body["retry_after_ms"] == nil {
		t.Fatalf("right password after the burst: %d %s, want 429 M_LIMIT_EXCEEDED", r.Status, r.Raw)
	}
	r = srv.Do(t, "", "POST", "/_matrix/client/v3/login", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "correct horse battery"})
	if r.Status != 429 {
		t.Fatalf("login after UIA guesses: %d %s, want 429", r.Status, r.Raw)
	}
	expectOK(t, whoami(other), "the device is still there")
}

// TestSharedSecretNonces: nonces for shared-secret registration (Synapse's
// /_synapse/admin/v1/register) are limited per address (429 M_LIMIT_EXCEEDED past a burst
// of 100), each is good once, and registration with one still works.
func TestSharedSecretNonces(t *testing.T) {
	srv := StartServer(t)
	cfg, err := os.ReadFile(srv.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	secret := regexp.MustCompile(`(?m)^  shared_secret: "([^"]+)"`).FindSubmatch(cfg)
	if secret == nil {
		t.Fatal("no registration shared secret in the generated config")
	}
	limited := 0
	for i := 0; i < 300; i++ {
		r := srv.Do(t, "", "GET", "/_synapse/admin/v1/register", nil)
		if r.Status == 429 && r.ErrCode() == "M_LIMIT_EXCEEDED" {
			limited++
		} else if r.Status != 200 {
			t.Fatalf("nonce %d: %d %s", i, r.Status, r.Raw)
		}
	}
	if limited == 0 {
		t.Fatal("300 nonce requests in a row were all answered")
	}
	time.Sleep(200 * time.Millisecond)
	nonce := str(srv.Do(t, "", "GET", "/_synapse/admin/v1/register", nil).Body, "nonce")
	mac := hmac.New(sha1.New, secret[1])
	mac.Write([]byte(nonce + "\x00carol\x00a long enough password\x00notadmin"))
	body := map[string]any{"nonce": nonce, "username": "carol", "password": "a long enough password", "mac": hex.EncodeToString(mac.Sum(nil))}
	expectOK(t, srv.Do(t, "", "POST", "/_synapse/admin/v1/register", body), "shared-secret registration")
	r := srv.Do(t, "", "POST", "/_synapse/admin/v1/register", body)
	expectErr(t, r, "the same nonce again", 403, "M_FORBIDDEN")
}

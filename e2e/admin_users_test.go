package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// adminUser is the admin API path of a user's resource.
func adminUser(version, userID, rest string) string {
	return "/_synapse/admin/" + version + "/users/" + esc(userID) + rest
}

// serverOf is the server name of a user ID.
func serverOf(userID string) string { return userID[strings.IndexByte(userID, ':')+1:] }

// TestAdminUsersForbidden: every user route refuses a non-admin with 403 M_FORBIDDEN, and
// the client API's whois answers a user about themselves only.
func TestAdminUsersForbidden(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	u := esc(admin.UserID)
	for _, rt := range []struct{ method, path string }{
		{"GET", "/_synapse/admin/v2/users"},
		{"GET", "/_synapse/admin/v3/users"},
		{"GET", "/_synapse/admin/v2/users/" + u},
		{"PUT", "/_synapse/admin/v2/users/" + u},
		{"GET", "/_synapse/admin/v1/whois/" + u},
		{"POST", "/_synapse/admin/v1/deactivate/" + u},
		{"POST", "/_synapse/admin/v1/reset_password/" + u},
		{"GET", "/_synapse/admin/v1/users/" + u + "/admin"},
		{"PUT", "/_synapse/admin/v1/users/" + u + "/admin"},
		{"GET", "/_synapse/admin/v1/users/" + u + "/joined_rooms"},
		{"GET", "/_synapse/admin/v1/users/" + u + "/memberships"},
		{"GET", "/_synapse/admin/v2/users/" + u + "/devices"},
		{"POST", "/_synapse/admin/v2/users/" + u + "/devices"},
		{"GET", "/_synapse/admin/v2/users/" + u + "/devices/X"},
		{"PUT", "/_synapse/admin/v2/users/" + u + "/devices/X"},
		{"DELETE", "/_synapse/admin/v2/users/" + u + "/devices/X"},
		{"POST", "/_synapse/admin/v2/users/" + u + "/delete_devices"},
		{"GET", "/_synapse/admin/v1/users/" + u + "/pushers"},
		{"GET", "/_synapse/admin/v1/users/" + u + "/accountdata"},
		{"GET", "/_synapse/admin/v1/users/" + u + "/override_ratelimit"},
		{"POST", "/_synapse/admin/v1/users/" + u + "/override_ratelimit"},
		{"DELETE", "/_synapse/admin/v1/users/" + u + "/override_ratelimit"},
		{"POST", "/_synapse/admin/v1/users/" + u + "/shadow_ban"},
		{"DELETE", "/_synapse/admin/v1/users/" + u + "/shadow_ban"},
		{"GET", "/_synapse/admin/v1/username_available?username=x"},
		{"POST", "/_synapse/admin/v1/users/" + u + "/login"},
		{"PUT", "/_synapse/admin/v1/suspend/" + u},
		{"GET", "/_matrix/client/v1/admin/suspend/" + u},
		{"PUT", "/_matrix/client/v1/admin/suspend/" + u},
		{"GET", "/_matrix/client/v1/admin/lock/" + u},
		{"PUT", "/_matrix/client/v1/admin/lock/" + u},
		{"GET", "/_matrix/client/v3/admin/whois/" + u},
	} {
		expectErr(t, call(alice, rt.method, rt.path, map[string]any{}), "non-admin "+rt.method+" "+rt.path, 403, "M_FORBIDDEN")
		expectErr(t, anon(t, srv, rt.method, rt.path, map[string]any{}), "no token "+rt.method+" "+rt.path, 401, "M_MISSING_TOKEN")
	}
	// A user may whois themselves through the client API; an admin anyone.
	r := call(alice, "GET", "/_matrix/client/v3/admin/whois/"+esc(alice.UserID), nil)
	expectOK(t, r, "whois self")
	if str(r.Body, "user_id") != alice.UserID || obj(r.Body, "devices", alice.DeviceID) == nil {
		t.Errorf("whois self: %s", r.Raw)
	}
	r = call(admin, "GET", "/_matrix/client/r0/admin/whois/"+esc(alice.UserID), nil)
	expectOK(t, r, "admin whois via client API")
	conns := obj(r.Body, "devices", alice.DeviceID)["sessions"].([]any)[0].(map[string]any)["connections"].([]any)
	if c := conns[0].(map[string]any); c["ip"] != "127.0.0.1" || c["last_seen"].(float64) == 0 {
		t.Errorf("whois connection: %v", c)
	}
	r = call(admin, "GET", "/_synapse/admin/v1/whois/"+esc(alice.UserID), nil)
	expectOK(t, r, "admin whois")
	expectOK(t, call(alice, "GET", "/_matrix/client/v1/admin/whois/"+esc(alice.UserID), nil), "whois self, v1 path")
	// Targets: another server's user is 400 M_INVALID_PARAM, an unknown one 404 M_NOT_FOUND.
	for _, path := range []string{
		adminUser("v2", "@bob:elsewhere.example", ""),
		"/_synapse/admin/v1/whois/" + esc("@bob:elsewhere.example"),
		adminUser("v1", "@bob:elsewhere.example", "/joined_rooms"),
		"/_matrix/client/v1/admin/lock/" + esc("@bob:elsewhere.example"),
	} {
		expectErr(t, call(admin, "GET", path, nil), "remote user "+path, 400, "M_INVALID_PARAM")
	}
	nobody := "@nobody:" + serverOf(admin.UserID)
	for _, path := range []string{
		adminUser("v2", nobody, ""), adminUser("v1", nobody, "/admin"), adminUser("v2", nobody, "/devices"),
		adminUser("v1", nobody, "/accountdata"), "/_matrix/client/v1/admin/suspend/" + esc(nobody),
	} {
		expectErr(t, call(admin, "GET", path, nil), "unknown user "+path, 404, "M_NOT_FOUND")
	}
	expectErr(t, call(admin, "POST", "/_synapse/admin/v1/deactivate/"+esc(nobody), map[string]any{}), "deactivate unknown", 404, "M_NOT_FOUND")
}

// TestAdminUsersCreateListModify: PUT /v2/users creates (201) and modifies (200) accounts;
// the list filters, orders and pages as Synapse's does; a new password logs the user out.
func TestAdminUsersCreateListModify(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	server := serverOf(admin.UserID)
	id := func(l string) string { return "@" + l + ":" + server }

	r := call(admin, "PUT", adminUser("v2", id("carol"), ""), map[string]any{
		"password": "carol password 1", "displayname": "Zed Carol", "avatar_url": "mxc://x/y", "user_type": "bot",
	})
	if r.Status != 201 {
		t.Fatalf("create carol: %d %s", r.Status, r.Raw)
	}
	if r.Body["name"] != id("carol") || r.Body["displayname"] != "Zed Carol" || r.Body["user_type"] != "bot" || r.Body["admin"] != false {
		t.Errorf("created carol: %s", r.Raw)
	}
	for _, l := range []string{"dave", "erin", "frank"} {
		r := call(admin, "PUT", adminUser("v2", id(l), ""), map[string]any{"password": l + " password 1", "displayname": "User " + l})
		if r.Status != 201 {
			t.Fatalf("create %s: %d %s", l, r.Status, r.Raw)
		}
	}
	r = call(admin, "PUT", adminUser("v2", id("grace"), ""), map[string]any{"password": "grace password", "admin": true})
	if r.Status != 201 || r.Body["admin"] != true {
		t.Fatalf("create admin grace: %d %s", r.Status, r.Raw)
	}
	expectErr(t, call(admin, "PUT", adminUser("v2", "@x:elsewhere.example", ""), map[string]any{}), "create remote", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "PUT", adminUser("v2", id("bad"), ""), map[string]any{"user_type": "wizard"}), "bad user_type", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "PUT", adminUser("v2", id("bad"), ""), map[string]any{"admin": "yes"}), "bad admin", 400, "M_BAD_JSON")
	expectErr(t, call(admin, "PUT", adminUser("v2", id("bad"), ""), map[string]any{"deactivated": true, "locked": true}), "deactivated and locked", 400, "M_INVALID_PARAM")

	// The new account logs in with its password.
	expectOK(t, loginPassword(t, srv, "carol", "carol password 1"), "carol login")

	names := func(r Resp) []string {
		var out []string
		for _, u := range r.Body["users"].([]any) {
			out = append(out, u.(map[string]any)["name"].(string))
		}
		return out
	}
	list := func(q string) Resp {
		t.Helper()
		r := call(admin, "GET", "/_synapse/admin/v2/users?"+q, nil)
		expectOK(t, r, "list "+q)
		return r
	}
	r = list("")
	checkSameIDs(t, "all users", names(r), []string{id("carol"), id("dave"), id("erin"), id("frank"), id("grace"), id("root")})
	if r.Body["total"].(float64) != 6 || r.Body["next_token"] != nil {
		t.Errorf("list all: %s", r.Raw)
	}
	first := r.Body["users"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "is_guest", "admin", "user_type", "deactivated", "erased", "shadow_banned", "displayname", "avatar_url", "creation_ts", "locked"} {
		if _, ok := first[k]; !ok {
			t.Errorf("list entry lacks %s: %v", k, first)
		}
	}
	// Paging: limit 2 from 0, then from next_token.
	r = list("limit=2")
	if got := names(r); len(got) != 2 || got[0] != id("carol") || r.Body["next_token"] != "2" || r.Body["total"].(float64) != 6 {
		t.Errorf("page 1: %s", r.Raw)
	}
	r = list("limit=2&from=4")
	if got := names(r); len(got) != 2 || got[1] != id("root") || r.Body["next_token"] != nil {
		t.Errorf("last page: %s", r.Raw)
	}
	// Filters.
	checkSameIDs(t, "name=user (display names)", names(list("name=user")), []string{id("dave"), id("erin"), id("frank")})
	checkSameIDs(t, "name=car", names(list("name=car")), []string{id("carol")})
	if got := names(list("name=" + url.QueryEscape(server))); len(got) != 0 {
		t.Errorf("name matches the server name: %v", got)
	}
	checkSameIDs(t, "user_id=ra", names(list("user_id=ra")), []string{id("frank"), id("grace")})
	checkSameIDs(t, "admins=true", names(list("admins=true")), []string{id("grace"), id("root")})
	if got := names(list("admins=false")); len(got) != 4 {
		t.Errorf("admins=false: %v", got)
	}
	checkSameIDs(t, "not_user_type=bot", names(list("not_user_type=bot&admins=false")), []string{id("dave"), id("erin"), id("frank")})
	// Order: by display name, backwards.
	checkSameIDs(t, "order_by=displayname&dir=b", names(list("name=user&order_by=displayname&dir=b")), []string{id("frank"), id("erin"), id("dave")})
	if got := names(list("order_by=admin&dir=b")); got[0] != id("grace") || got[1] != id("root") {
		t.Errorf("order_by=admin&dir=b: %v", got)
	}
	if got := names(list("order_by=creation_ts")); got[0] != id("root") {
		t.Errorf("order_by=creation_ts: %v", got)
	}
	expectErr(t, call(admin, "GET", "/_synapse/admin/v2/users?order_by=shoe_size", nil), "bad order_by", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "GET", "/_synapse/admin/v2/users?dir=x", nil), "bad dir", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "GET", "/_synapse/admin/v2/users?deactivated=maybe", nil), "bad bool", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "GET", "/_synapse/admin/v2/users?limit=-1", nil), "bad limit", 400, "M_INVALID_PARAM")

	// Deactivated and locked accounts: v2 hides them unless asked; v3's deactivated is a filter.
	expectOK(t, call(admin, "PUT", adminUser("v2", id("erin"), ""), map[string]any{"deactivated": true}), "deactivate erin")
	expectOK(t, call(admin, "PUT", adminUser("v2", id("frank"), ""), map[string]any{"locked": true}), "lock frank")
	if got := names(list("name=user")); len(got) != 1 || got[0] != id("dave") {
		t.Errorf("v2 default hides deactivated and locked: %v", got)
	}
	checkSameIDs(t, "v2 deactivated=true", names(list("name=user&deactivated=true")), []string{id("dave"), id("erin")})
	checkSameIDs(t, "v2 locked=true", names(list("name=user&locked=true")), []string{id("dave"), id("frank")})
	r = call(admin, "GET", "/_synapse/admin/v3/users?name=user&deactivated=true", nil)
	checkSameIDs(t, "v3 deactivated=true", names(r), []string{id("erin")})
	r = call(admin, "GET", "/_synapse/admin/v3/users?name=user&locked=true", nil)
	checkSameIDs(t, "v3 no deactivated filter", names(r), []string{id("dave"), id("erin"), id("frank")})

	// Query.
	r = call(admin, "GET", adminUser("v2", id("erin"), ""), nil)
	expectOK(t, r, "query erin")
	if r.Body["deactivated"] != true || r.Body["suspended"] != false || r.Body["threepids"] == nil || r.Body["external_ids"] == nil {
		t.Errorf("query erin: %s", r.Raw)
	}
	// Reactivation needs a password.
	expectErr(t, call(admin, "PUT", adminUser("v2", id("erin"), ""), map[string]any{"deactivated": false}), "reactivate without password", 400, "M_INVALID_PARAM")
	r = call(admin, "PUT", adminUser("v2", id("erin"), ""), map[string]any{"deactivated": false, "password": "erin password 2"})
	if r.Status != 200 || r.Body["deactivated"] != false {
		t.Errorf("reactivate erin: %d %s", r.Status, r.Raw)
	}
	expectOK(t, loginPassword(t, srv, "erin", "erin password 2"), "erin logs in after reactivation")

	// Modify: a new password logs the devices out unless logout_devices is false.
	dave := srv.Do(t, "", "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password", "user": "dave", "password": "dave password 1"})
	daveToken := str(dave.Body, "access_token")
	r = call(admin, "PUT", adminUser("v2", id("dave"), ""), map[string]any{"password": "dave password 2", "logout_devices": false, "displayname": "Dave D"})
	if r.Status != 200 || r.Body["displayname"] != "Dave D" {
		t.Errorf("modify dave: %d %s", r.Status, r.Raw)
	}
	expectOK(t, srv.Do(t, daveToken, "GET", "/_matrix/client/v3/account/whoami", nil), "dave's token kept")
	expectErr(t, loginPassword(t, srv, "dave", "dave password 1"), "old password", 403, "M_FORBIDDEN")
	expectOK(t, loginPassword(t, srv, "dave", "dave password 2"), "new password")
	expectOK(t, call(admin, "PUT", adminUser("v2", id("dave"), ""), map[string]any{"password": "dave password 3"}), "password with logout")
	expectErr(t, srv.Do(t, daveToken, "GET", "/_matrix/client/v3/account/whoami", nil), "dave logged out", 401, "M_UNKNOWN_TOKEN")
	expectOK(t, loginPassword(t, srv, "dave", "dave password 3"), "newest password")
	r = call(admin, "PUT", adminUser("v2", id("carol"), ""), map[string]any{"user_type": nil, "displayname": ""})
	if r.Status != 200 || r.Body["user_type"] != nil || r.Body["displayname"] != nil {
		t.Errorf("clear user_type and displayname: %d %s", r.Status, r.Raw)
	}

	// The admin flag.
	r = call(admin, "GET", adminUser("v1", id("dave"), "/admin"), nil)
	if r.Status != 200 || r.Body["admin"] != false {
		t.Errorf("get admin: %s", r.Raw)
	}
	expectOK(t, call(admin, "PUT", adminUser("v1", id("dave"), "/admin"), map[string]any{"admin": true}), "promote dave")
	if r := call(admin, "GET", adminUser("v1", id("dave"), "/admin"), nil); r.Body["admin"] != true {
		t.Errorf("dave not promoted: %s", r.Raw)
	}
	expectErr(t, call(admin, "PUT", adminUser("v1", admin.UserID, "/admin"), map[string]any{"admin": false}), "demote self", 400, "M_INVALID_PARAM")
	expectErr(t, call(admin, "PUT", adminUser("v1", id("dave"), "/admin"), map[string]any{}), "admin missing", 400, "M_MISSING_PARAM")

	// Username availability.
	r = call(admin, "GET", "/_synapse/admin/v1/username_available?username=newname", nil)
	if r.Status != 200 || r.Body["available"] != true {
		t.Errorf("available: %s", r.Raw)
	}
	expectErr(t, call(admin, "GET", "/_synapse/admin/v1/username_available?username=dave", nil), "taken", 400, "M_USER_IN_USE")
	expectErr(t, call(admin, "GET", "/_synapse/admin/v1/username_available?username=Bad!Name", nil), "invalid", 400, "M_INVALID_USERNAME")
}

// TestAdminUsersAccountTools: deactivation with erase, password reset, devices, joined rooms,
// pushers, account data and logging in as a user.
func TestAdminUsersAccountTools(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "tools"})
	join(bob, room)

	r := call(admin, "GET", adminUser("v1", bob.UserID, "/joined_rooms"), nil)
	if r.Status != 200 || r.Body["total"].(float64) != 1 || r.Body["joined_rooms"].([]any)[0] != room {
		t.Errorf("joined_rooms: %s", r.Raw)
	}
	left := bob.CreateRoom(map[string]any{})
	bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(left)+"/leave", map[string]any{})
	r = call(admin, "GET", adminUser("v1", bob.UserID, "/memberships"), nil)
	if r.Status != 200 || obj(r.Body, "memberships")[room] != "join" || obj(r.Body, "memberships")[left] != "leave" {
		t.Errorf("memberships: %s", r.Raw)
	}

	// Account data, global and per room.
	bob.MustDo("PUT", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/account_data/org.example.g", map[string]any{"a": 1})
	bob.MustDo("PUT", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/rooms/"+esc(room)+"/account_data/org.example.r", map[string]any{"b": 2})
	r = call(admin, "GET", adminUser("v1", bob.UserID, "/accountdata"), nil)
	expectOK(t, r, "accountdata")
	if obj(r.Body, "account_data", "global", "org.example.g")["a"] != 1.0 || obj(r.Body, "account_data", "rooms", room, "org.example.r")["b"] != 2.0 {
		t.Errorf("accountdata: %s", r.Raw)
	}
	r = call(admin, "GET", adminUser("v1", bob.UserID, "/pushers"), nil)
	if r.Status != 200 || r.Body["total"].(float64) != 0 || len(r.Body["pushers"].([]any)) != 0 {
		t.Errorf("pushers: %s", r.Raw)
	}

	// Devices.
	r = call(admin, "GET", adminUser("v2", bob.UserID, "/devices"), nil)
	if r.Status != 200 || r.Body["total"].(float64) != 1 {
		t.Fatalf("devices: %s", r.Raw)
	}
	if d := r.Body["devices"].([]any)[0].(map[string]any); d["device_id"] != bob.DeviceID || d["user_id"] != bob.UserID {
		t.Errorf("device: %v", d)
	}
	expectOK(t, call(admin, "POST", adminUser("v2", bob.UserID, "/devices"), map[string]any{"device_id": "ADMINMADE"}), "create device")
	expectOK(t, call(admin, "POST", adminUser("v2", bob.UserID, "/devices"), map[string]any{"device_id": "ADMINMADE"}), "create device again")
	expectErr(t, call(admin, "POST", adminUser("v2", bob.UserID, "/devices"), map[string]any{}), "create device without id", 400, "M_MISSING_PARAM")
	expectOK(t, call(admin, "PUT", adminUser("v2", bob.UserID, "/devices/ADMINMADE"), map[string]any{"display_name": "made by admin"}), "rename device")
	r = call(admin, "GET", adminUser("v2", bob.UserID, "/devices/ADMINMADE"), nil)
	if r.Status != 200 || r.Body["display_name"] != "made by admin" {
		t.Errorf("device after rename: %s", r.Raw)
	}
	expectErr(t, call(admin, "GET", adminUser("v2", bob.UserID, "/devices/NOPE"), nil), "unknown device", 404, "M_NOT_FOUND")
	expectOK(t, call(admin, "DELETE", adminUser("v2", bob.UserID, "/devices/ADMINMADE"), nil), "delete device")
	expectErr(t, call(admin, "GET", adminUser("v2", bob.UserID, "/devices/ADMINMADE"), nil), "deleted device", 404, "M_NOT_FOUND")
	bob2 := srv.Login(t, "bob")
	expectOK(t, call(admin, "POST", adminUser("v2", bob.UserID, "/delete_devices"), map[string]any{"devices": []string{bob2.DeviceID}}), "delete_devices")
	expectErr(t, bob2.Do("GET", "/_matrix/client/v3/account/whoami", nil), "deleted device's token", 401, "M_UNKNOWN_TOKEN")
	expectOK(t, whoami(bob), "bob's other device")

	// Reset password: logout_devices false keeps sessions, the default ends them.
	expectErr(t, call(admin, "POST", "/_synapse/admin/v1/reset_password/"+esc(bob.UserID), map[string]any{}), "reset without password", 400, "M_MISSING_PARAM")
	expectOK(t, call(admin, "POST", "/_synapse/admin/v1/reset_password/"+esc(bob.UserID), map[string]any{"new_password": "bob password 2", "logout_devices": false}), "reset keep")
	expectOK(t, whoami(bob), "bob kept")
	expectOK(t, loginPassword(t, srv, "bob", "bob password 2"), "bob new password")
	expectOK(t, call(admin, "POST", "/_synapse/admin/v1/reset_password/"+esc(bob.UserID), map[string]any{"new_password": "bob password 3"}), "reset logout")
	expectErr(t, whoami(bob), "bob logged out", 401, "M_UNKNOWN_TOKEN")

	// Login as a user: a token acting as alice, on no device of hers.
	expectErr(t, call(admin, "POST", adminUser("v1", admin.UserID, "/login"), map[string]any{}), "login as self", 400, "M_INVALID_PARAM")
	r = call(admin, "POST", adminUser("v1", alice.UserID, "/login"), map[string]any{})
	expectOK(t, r, "login as alice")
	puppet := &Client{t: t, srv: srv, Token: str(r.Body, "access_token"), UserID: alice.UserID}
	if w := whoami(puppet); str(w.Body, "user_id") != alice.UserID {
		t.Errorf("puppet whoami: %s", w.Raw)
	}
	puppet.Send(room, "sent by the admin as alice")
	if r := call(admin, "GET", adminUser("v2", alice.UserID, "/devices"), nil); r.Body["total"].(float64) != 1 {
		t.Errorf("puppet token shows as a device: %s", r.Raw)
	}
	expectOK(t, puppet.Do("POST", "/_matrix/client/v3/logout", map[string]any{}), "puppet logout")
	expectErr(t, whoami(puppet), "puppet after logout", 401, "M_UNKNOWN_TOKEN")
	expectOK(t, whoami(alice), "alice unaffected by the puppet's logout")
	r = call(admin, "POST", adminUser("v1", alice.UserID, "/login"), map[string]any{"valid_until_ms": time.Now().Add(time.Hour).UnixMilli()})
	expectOK(t, whoami(&Client{t: t, srv: srv, Token: str(r.Body, "access_token")}), "token before its expiry")
	r = call(admin, "POST", adminUser("v1", alice.UserID, "/login"), map[string]any{"valid_until_ms": time.Now().Add(-time.Second).UnixMilli()})
	expectErr(t, whoami(&Client{t: t, srv: srv, Token: str(r.Body, "access_token")}), "token past its expiry", 401, "M_UNKNOWN_TOKEN")
	expectErr(t, call(admin, "POST", adminUser("v1", alice.UserID, "/login"), map[string]any{"valid_until_ms": "soon"}), "bad valid_until_ms", 400, "M_BAD_JSON")

	// Deactivate with erase: rooms left, tokens gone, profile wiped, marked erased.
	r = call(admin, "POST", "/_synapse/admin/v1/deactivate/"+esc(alice.UserID), map[string]any{"erase": true})
	if r.Status != 200 || r.Body["id_server_unbind_result"] != "success" {
		t.Fatalf("deactivate: %d %s", r.Status, r.Raw)
	}
	expectErr(t, whoami(alice), "alice's token after deactivation", 401, "M_UNKNOWN_TOKEN")
	expectErr(t, loginPassword(t, srv, "alice", testPassword), "alice login after deactivation", 403, "M_FORBIDDEN", "M_USER_DEACTIVATED")
	r = call(admin, "GET", adminUser("v2", alice.UserID, ""), nil)
	if r.Body["deactivated"] != true || r.Body["erased"] != true || r.Body["displayname"] != nil {
		t.Errorf("alice after erase: %s", r.Raw)
	}
	if r := call(admin, "GET", adminUser("v1", alice.UserID, "/joined_rooms"), nil); r.Body["total"].(float64) != 0 {
		t.Errorf("alice still in rooms: %s", r.Raw)
	}
	if m := membership(bob2ndLogin(t, srv), room, alice.UserID); m != "leave" {
		t.Errorf("alice's membership after deactivation: %q", m)
	}
	// An empty body is accepted too.
	carol := srv.Register(t, "carol")
	expectOK(t, srv.Do(t, admin.Token, "POST", "/_synapse/admin/v1/deactivate/"+esc(carol.UserID), nil), "deactivate with no body")
	r = call(admin, "GET", adminUser("v2", carol.UserID, ""), nil)
	if r.Body["deactivated"] != true || r.Body["erased"] != false {
		t.Errorf("carol after plain deactivation: %s", r.Raw)
	}
}

// bob2ndLogin logs bob in again (his password was reset to "bob password 3").
func bob2ndLogin(t *testing.T, srv *Server) *Client {
	r := loginPassword(t, srv, "bob", "bob password 3")
	return &Client{t: t, srv: srv, UserID: str(r.Body, "user_id"), DeviceID: str(r.Body, "device_id"), Token: str(r.Body, "access_token")}
}

// TestAdminUsersModeration: suspension, lock, shadow-ban and the rate-limit override, as the
// moderated user and the others in their room observe them.
func TestAdminUsersModeration(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, room)
	other := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	msg := map[string]any{"msgtype": "m.text", "body": "hi"}

	t.Run("suspend", func(t *testing.T) {
		suspend := "/_matrix/client/v1/admin/suspend/" + esc(bob.UserID)
		own := bob.Send(room, "before the suspension")
		theirs := alice.Send(room, "alice's")
		r := call(admin, "PUT", suspend, map[string]any{"suspended": true})
		if r.Status != 200 || r.Body["suspended"] != true {
			t.Fatalf("suspend: %d %s", r.Status, r.Raw)
		}
		if r := call(admin, "GET", suspend, nil); r.Body["suspended"] != true {
			t.Errorf("GET suspend: %s", r.Raw)
		}
		if r := call(admin, "GET", adminUser("v2", bob.UserID, ""), nil); r.Body["suspended"] != true {
			t.Errorf("query suspended: %s", r.Raw)
		}
		// Reading still works.
		bob.Sync("", "", 0)
		expectOK(t, call(bob, "GET", "/_matrix/client/v3/rooms/"+esc(room)+"/messages?dir=b", nil), "suspended /messages")
		expectOK(t, call(bob, "GET", "/_matrix/client/v3/profile/"+esc(alice.UserID), nil), "suspended profile lookup")
		// Acting does not.
		expectErr(t, sendTxn(bob, room, "m.room.message", "s1", msg), "suspended send", 403, "M_USER_SUSPENDED")
		expectErr(t, putState(bob, room, "m.room.topic", "", map[string]any{"topic": "x"}), "suspended state", 403, "M_USER_SUSPENDED")
		expectErr(t, call(bob, "POST", "/_matrix/client/v3/join/"+esc(other), map[string]any{}), "suspended join", 403, "M_USER_SUSPENDED")
		expectErr(t, call(bob, "POST", "/_matrix/client/v3/createRoom", map[string]any{}), "suspended createRoom", 403, "M_USER_SUSPENDED")
		expectErr(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/upgrade", map[string]any{"new_version": "11"}), "suspended upgrade", 403, "M_USER_SUSPENDED")
		expectErr(t, call(bob, "POST", "/_matrix/client/v3/knock/"+esc(other), map[string]any{}), "suspended knock", 403, "M_USER_SUSPENDED")
		expectErr(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": admin.UserID}), "suspended invite", 403, "M_USER_SUSPENDED")
		expectErr(t, call(bob, "PUT", "/_matrix/client/v3/profile/"+esc(bob.UserID)+"/displayname", map[string]any{"displayname": "B"}), "suspended profile", 403, "M_USER_SUSPENDED")
		expectErr(t, call(bob, "PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(theirs)+"/r1", map[string]any{}), "suspended redacts another's event", 403, "M_USER_SUSPENDED")
		expectErr(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/ban", map[string]any{"user_id": admin.UserID}), "suspended ban", 403, "M_USER_SUSPENDED")
		expectErr(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/kick", map[string]any{"user_id": admin.UserID}), "suspended kick", 403, "M_USER_SUSPENDED")
		expectOK(t, call(bob, "PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(own)+"/r2", map[string]any{}), "suspended redacts own event")
		// Synapse's endpoint lifts it.
		r = call(admin, "PUT", "/_synapse/admin/v1/suspend/"+esc(bob.UserID), map[string]any{"suspend": false})
		if r.Status != 200 || r.Body["user_"+bob.UserID+"_suspended"] != false {
			t.Errorf("unsuspend: %d %s", r.Status, r.Raw)
		}
		expectOK(t, sendTxn(bob, room, "m.room.message", "s2", msg), "send after unsuspend")
		// An admin cannot be suspended through the spec's endpoint; bad bodies are 400.
		expectErr(t, call(admin, "PUT", "/_matrix/client/v1/admin/suspend/"+esc(admin.UserID), map[string]any{"suspended": true}), "suspend admin", 403, "M_FORBIDDEN")
		expectErr(t, call(admin, "PUT", suspend, map[string]any{}), "suspend without field", 400, "M_MISSING_PARAM")
		expectErr(t, call(admin, "PUT", suspend, map[string]any{"suspended": "yes"}), "suspend bad field", 400, "M_BAD_JSON")
	})

	t.Run("lock", func(t *testing.T) {
		lock := "/_matrix/client/v1/admin/lock/" + esc(bob.UserID)
		r := call(admin, "PUT", lock, map[string]any{"locked": true})
		if r.Status != 200 || r.Body["locked"] != true {
			t.Fatalf("lock: %d %s", r.Status, r.Raw)
		}
		if r := call(admin, "GET", lock, nil); r.Body["locked"] != true {
			t.Errorf("GET lock: %s", r.Raw)
		}
		for _, rq := range []struct{ method, path string }{
			{"GET", "/_matrix/client/v3/sync?timeout=0"},
			{"GET", "/_matrix/client/v3/account/whoami"},
			{"GET", "/_matrix/client/v3/rooms/" + esc(room) + "/messages?dir=b"},
			{"PUT", "/_matrix/client/v3/rooms/" + esc(room) + "/send/m.room.message/l1"},
			{"GET", "/_matrix/client/v3/joined_rooms"},
		} {
			r := call(bob, rq.method, rq.path, msg)
			expectErr(t, r, "locked "+rq.path, 401, "M_USER_LOCKED")
			if r.Body["soft_logout"] != true {
				t.Errorf("locked %s: soft_logout not true: %s", rq.path, r.Raw)
			}
		}
		r = loginPassword(t, srv, "bob", testPassword)
		expectErr(t, r, "locked login", 401, "M_USER_LOCKED")
		if r.Body["soft_logout"] != true {
			t.Errorf("locked login: %s", r.Raw)
		}
		expectErr(t, call(admin, "PUT", "/_matrix/client/v1/admin/lock/"+esc(admin.UserID), map[string]any{"locked": true}), "lock admin", 403, "M_FORBIDDEN")
		expectOK(t, call(admin, "PUT", lock, map[string]any{"locked": false}), "unlock")
		expectOK(t, whoami(bob), "whoami after unlock")
		bob.Sync("", "", 0)
		// A locked account may still log out.
		bob2 := srv.Login(t, "bob")
		expectOK(t, call(admin, "PUT", lock, map[string]any{"locked": true}), "lock again")
		expectOK(t, bob2.Do("POST", "/_matrix/client/v3/logout", map[string]any{}), "locked logout")
		expectOK(t, call(admin, "PUT", lock, map[string]any{"locked": false}), "unlock again")
	})

	t.Run("shadow-ban", func(t *testing.T) {
		expectOK(t, call(admin, "POST", adminUser("v1", bob.UserID, "/shadow_ban"), nil), "shadow-ban")
		if r := call(admin, "GET", adminUser("v2", bob.UserID, ""), nil); r.Body["shadow_banned"] != true {
			t.Errorf("query shadow_banned: %s", r.Raw)
		}
		aliceSync := newSyncer(alice, "")
		aliceSync.once(0)
		r := sendTxn(bob, room, "m.room.message", "sb1", map[string]any{"msgtype": "m.text", "body": "shadow secret"})
		expectOK(t, r, "shadow-banned send")
		fakeID := str(r.Body, "event_id")
		if !strings.HasPrefix(fakeID, "$") {
			t.Errorf("shadow-banned send: %s", r.Raw)
		}
		if again := sendTxn(bob, room, "m.room.message", "sb1", map[string]any{"msgtype": "m.text", "body": "shadow secret"}); str(again.Body, "event_id") != fakeID {
			t.Errorf("retried shadow-banned send: %s, want %s", again.Raw, fakeID)
		}
		r = putState(bob, room, "m.room.topic", "", map[string]any{"topic": "shadow topic"})
		expectOK(t, r, "shadow-banned state")
		r = call(bob, "POST", "/_matrix/client/v3/createRoom", map[string]any{"name": "shadow room"})
		expectOK(t, r, "shadow-banned createRoom")
		if rid := str(r.Body, "room_id"); !strings.HasPrefix(rid, "!") {
			t.Errorf("shadow-banned createRoom: %s", r.Raw)
		}
		expectOK(t, call(bob, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": admin.UserID}), "shadow-banned invite")
		marker := alice.Send(room, "marker")
		aliceSync.waitEvent(room, marker)
		for _, ev := range getMessages(alice, room, "b", "", 50).chunk {
			if strings.Contains(jsonString(ev), "shadow") || evID(ev) == fakeID {
				t.Errorf("alice's /messages shows the shadow-banned user's event: %v", ev)
			}
		}
		for _, ev := range aliceSync.tl[room] {
			if strings.Contains(jsonString(ev), "shadow") {
				t.Errorf("alice's /sync shows the shadow-banned user's writes: %v", ev)
			}
		}
		if r := admin.Sync("", "", 0); obj(r.Body, "rooms", "invite", room) != nil {
			t.Errorf("admin got the shadow-banned invite: %s", r.Raw)
		}
		if r := stateEvent(alice, room, "m.room.topic", ""); strings.Contains(string(r.Raw), "shadow") {
			t.Errorf("room topic changed: %s", r.Raw)
		}
		expectOK(t, call(admin, "DELETE", adminUser("v1", bob.UserID, "/shadow_ban"), nil), "un-shadow-ban")
		visible := bob.Send(room, "visible again")
		aliceSync.waitEvent(room, visible)
	})

	t.Run("ratelimit", func(t *testing.T) {
		path := adminUser("v1", bob.UserID, "/override_ratelimit")
		r := call(admin, "GET", path, nil)
		if r.Status != 200 || len(r.Body) != 0 {
			t.Errorf("no override: %s", r.Raw)
		}
		r = call(admin, "POST", path, map[string]any{"messages_per_second": 1, "burst_count": 1})
		if r.Status != 200 || r.Body["messages_per_second"] != 1.0 || r.Body["burst_count"] != 1.0 {
			t.Errorf("set override: %s", r.Raw)
		}
		expectOK(t, sendTxn(bob, room, "m.room.message", "rl1", msg), "first send")
		r = sendTxn(bob, room, "m.room.message", "rl2", msg)
		expectErr(t, r, "second send at once", 429, "M_LIMIT_EXCEEDED")
		if r := call(admin, "GET", path, nil); r.Body["messages_per_second"] != 1.0 || r.Body["burst_count"] != 1.0 {
			t.Errorf("get override: %s", r.Raw)
		}
		// 0 and 0: no limit at all.
		expectOK(t, call(admin, "POST", path, map[string]any{"messages_per_second": 0, "burst_count": 0}), "unlimited override")
		for i := range 10 {
			expectOK(t, sendTxn(bob, room, "m.room.message", fmt.Sprintf("rl-u%d", i), msg), "unlimited send")
		}
		expectErr(t, call(admin, "POST", path, map[string]any{"messages_per_second": -1}), "negative override", 400, "M_INVALID_PARAM")
		expectErr(t, call(admin, "POST", path, map[string]any{"burst_count": 1.5}), "fractional override", 400, "M_INVALID_PARAM")
		r = call(admin, "DELETE", path, nil)
		if r.Status != 200 || len(r.Body) != 0 {
			t.Errorf("delete override: %s", r.Raw)
		}
		if r := call(admin, "GET", path, nil); len(r.Body) != 0 {
			t.Errorf("override after delete: %s", r.Raw)
		}
	})
}

// TestAdminUsersDeviceListsFederate: a device an admin deletes is announced to the servers
// sharing a room with its user (m.device_list_update with deleted: true), as the user's own
// deletion would be.
func TestAdminUsersDeviceListsFederate(t *testing.T) {
	ca := newTestCA(t)
	lat := startFederatedServer(t, ca)
	fake := startFakeHomeserver(t, ca)
	admin := lat.RegisterAdmin(t, "root")
	alice := lat.Register(t, "alice")
	phone := lat.Login(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})

	var mu sync.Mutex
	deleted := map[string]bool{} // device IDs of alice's announced as deleted
	fake.setExtra(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != "PUT" || !strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/send/") {
			return false
		}
		raw, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(raw))
		var txn struct {
			EDUs []struct {
				Type    string         `json:"edu_type"`
				Content map[string]any `json:"content"`
			} `json:"edus"`
		}
		_ = json.Unmarshal(raw, &txn)
		mu.Lock()
		for _, e := range txn.EDUs {
			if e.Type == "m.device_list_update" && e.Content["user_id"] == alice.UserID && e.Content["deleted"] == true {
				deleted[str(e.Content, "device_id")] = true
			}
		}
		mu.Unlock()
		return false
	})
	if _, err := fake.join(t, spec.ServerName(lat.Name), roomID, "@eve:"+string(fake.name)); err != nil {
		t.Fatalf("the fake server joining: %v", err)
	}
	expectOK(t, call(admin, "DELETE", adminUser("v2", alice.UserID, "/devices/"+esc(phone.DeviceID)), nil), "admin deletes alice's phone")
	alice.Send(roomID, "after the deletion")
	done, state := poll(20*time.Second, 100*time.Millisecond, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return deleted[phone.DeviceID], fmt.Sprint(deleted)
	})
	if !done {
		t.Errorf("no m.device_list_update deleting %s reached the other server (%s)", phone.DeviceID, state)
	}
}

package e2e

import (
	"testing"
)

// TestAccountsAndDevices covers registration checks, login flows, whoami, device management
// with user-interactive auth, password change, logout/all, deactivation and profile propagation.
func TestAccountsAndDevices(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")

	// registration.yaml GET /register/available: 200 {available:true}, or 400 M_USER_IN_USE.
	r := anon(t, srv, "GET", "/_matrix/client/v3/register/available?username=newcomer", nil)
	expectOK(t, r, "available(newcomer)")
	if r.Body["available"] != true {
		t.Errorf("available(newcomer) = %s, want available:true", r.Raw)
	}
	r = anon(t, srv, "GET", "/_matrix/client/v3/register/available?username=alice", nil)
	expectErr(t, r, "available(alice)", 400, "M_USER_IN_USE")
	r = anon(t, srv, "GET", "/_matrix/client/v3/register/available?username="+esc("Not Valid!"), nil)
	expectErr(t, r, "available(invalid)", 400, "M_INVALID_USERNAME")
	// Registering a taken name: 400 M_USER_IN_USE.
	r = anon(t, srv, "POST", "/_matrix/client/v3/register", map[string]any{"username": "alice", "password": testPassword, "auth": map[string]any{"type": "m.login.dummy"}})
	expectErr(t, r, "register taken username", 400, "M_USER_IN_USE")

	// login.yaml GET /login lists m.login.password.
	r = anon(t, srv, "GET", "/_matrix/client/v3/login", nil)
	expectOK(t, r, "GET /login")
	hasPassword := false
	for _, f := range list(r.Body, "flows") {
		if str(f, "type") == "m.login.password" {
			hasPassword = true
		}
	}
	if !hasPassword {
		t.Errorf("GET /login flows lack m.login.password: %s", r.Raw)
	}

	// whoami.yaml.
	r = whoami(alice)
	expectOK(t, r, "whoami")
	if str(r.Body, "user_id") != alice.UserID || str(r.Body, "device_id") != alice.DeviceID {
		t.Errorf("whoami = %s, want user_id %s device_id %s", r.Raw, alice.UserID, alice.DeviceID)
	}
	if alice.UserID != "@alice:localhost" {
		t.Errorf("registered user ID %q, want @alice:localhost", alice.UserID)
	}

	// Devices: list, rename, delete with UIA (device_management.yaml).
	phone := srv.Login(t, "alice")
	if phone.DeviceID == alice.DeviceID {
		t.Fatalf("second login reused device ID %s", phone.DeviceID)
	}
	r = call(alice, "GET", "/_matrix/client/v3/devices", nil)
	expectOK(t, r, "GET /devices")
	devs := map[string]bool{}
	for _, d := range list(r.Body, "devices") {
		devs[str(d, "device_id")] = true
	}
	if !devs[alice.DeviceID] || !devs[phone.DeviceID] || len(devs) != 2 {
		t.Errorf("GET /devices = %s, want exactly %s and %s", r.Raw, alice.DeviceID, phone.DeviceID)
	}
	expectOK(t, call(alice, "PUT", "/_matrix/client/v3/devices/"+esc(phone.DeviceID), map[string]any{"display_name": "Phone"}), "rename device")
	r = call(alice, "GET", "/_matrix/client/v3/devices/"+esc(phone.DeviceID), nil)
	expectOK(t, r, "GET device")
	if str(r.Body, "display_name") != "Phone" || str(r.Body, "device_id") != phone.DeviceID {
		t.Errorf("GET device after rename = %s", r.Raw)
	}
	r = call(alice, "PUT", "/_matrix/client/v3/devices/NOSUCHDEVICE", map[string]any{"display_name": "x"})
	expectErr(t, r, "rename unknown device", 404, "M_NOT_FOUND")
	r = call(alice, "GET", "/_matrix/client/v3/devices/NOSUCHDEVICE", nil)
	expectErr(t, r, "GET unknown device", 404, "M_NOT_FOUND")

	delPath := "/_matrix/client/v3/devices/" + esc(phone.DeviceID)
	session := uiaChallenge(alice, "DELETE", delPath, map[string]any{})
	// A wrong password is a failed stage: 401 with errcode M_FORBIDDEN and the flows again.
	r = call(alice, "DELETE", delPath, map[string]any{"auth": passwordAuth(alice.UserID, "wrong password", session)})
	expectErr(t, r, "delete device with wrong password", 401, "M_FORBIDDEN")
	if len(list(r.Body, "flows")) == 0 {
		t.Errorf("failed UIA stage response lacks flows: %s", r.Raw)
	}
	expectOK(t, whoami(phone), "device still exists after failed UIA")
	r = call(alice, "DELETE", delPath, map[string]any{"auth": passwordAuth(alice.UserID, testPassword, session)})
	expectOK(t, r, "delete device with password auth")
	expectErr(t, whoami(phone), "deleted device's token", 401, "M_UNKNOWN_TOKEN")
	r = call(alice, "GET", delPath, nil)
	expectErr(t, r, "GET deleted device", 404, "M_NOT_FOUND")

	// login.yaml: a client-supplied device_id names the device (a known one is reused);
	// initial_device_display_name becomes its display name.
	loginAs := func(deviceID string) Resp {
		t.Helper()
		r := anon(t, srv, "POST", "/_matrix/client/v3/login", map[string]any{
			"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"},
			"password": testPassword, "device_id": deviceID, "initial_device_display_name": "Tablet",
		})
		expectOK(t, r, "login with device_id "+deviceID)
		if str(r.Body, "device_id") != deviceID {
			t.Errorf("login with device_id %s returned device_id %q", deviceID, str(r.Body, "device_id"))
		}
		return r
	}
	loginAs("TABLET")
	tablet := &Client{t: t, srv: srv, UserID: alice.UserID, DeviceID: "TABLET", Token: str(loginAs("TABLET").Body, "access_token")}
	expectOK(t, whoami(tablet), "token of re-used device")
	r = call(alice, "GET", "/_matrix/client/v3/devices", nil)
	n := 0
	for _, d := range list(r.Body, "devices") {
		if str(d, "device_id") == "TABLET" {
			n++
			if str(d, "display_name") != "Tablet" {
				t.Errorf("TABLET display_name %q, want Tablet", str(d, "display_name"))
			}
		}
	}
	if n != 1 {
		t.Errorf("device list has %d TABLET entries after two logins with that device_id, want 1: %s", n, r.Raw)
	}
	// POST /delete_devices with UIA (device_management.yaml).
	r = uiaPassword(alice, "POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{"TABLET"}}, testPassword)
	expectOK(t, r, "delete_devices")
	expectErr(t, whoami(tablet), "token of device removed by delete_devices", 401, "M_UNKNOWN_TOKEN")

	// Password change (password_management.yaml); logout_devices defaults to true: other
	// devices are logged out, the requesting one keeps working.
	laptop := srv.Login(t, "alice")
	r = uiaPassword(alice, "POST", "/_matrix/client/v3/account/password", map[string]any{"new_password": "new secret words"}, testPassword)
	expectOK(t, r, "change password")
	expectOK(t, whoami(alice), "requesting device after password change")
	expectErr(t, whoami(laptop), "other device after password change", 401, "M_UNKNOWN_TOKEN")
	expectErr(t, loginPassword(t, srv, "alice", testPassword), "login with old password", 403, "M_FORBIDDEN")
	r = loginPassword(t, srv, "alice", "new secret words")
	expectOK(t, r, "login with new password")
	// Login by full user ID works too.
	r = anon(t, srv, "POST", "/_matrix/client/v3/login", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": alice.UserID}, "password": "new secret words",
	})
	expectOK(t, r, "login with full user ID")

	// /logout/all invalidates every token of the user.
	bob := srv.Register(t, "bob")
	b2 := srv.Login(t, "bob")
	b3 := srv.Login(t, "bob")
	expectOK(t, call(b2, "POST", "/_matrix/client/v3/logout/all", map[string]any{}), "logout/all")
	for _, c := range []*Client{bob, b2, b3} {
		expectErr(t, whoami(c), "token after logout/all ("+c.DeviceID+")", 401, "M_UNKNOWN_TOKEN")
	}
	bob = srv.Login(t, "bob")
	r = call(bob, "GET", "/_matrix/client/v3/devices", nil)
	expectOK(t, r, "devices after logout/all")
	if n := len(list(r.Body, "devices")); n != 1 {
		t.Errorf("devices after logout/all and a new login: %d, want 1: %s", n, r.Raw)
	}

	// Profile propagation (client-server-api/_index.md "Events on Change of Profile
	// Information"): a new displayname updates the m.room.member event in joined rooms.
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, roomID)
	bobSync := newSyncer(bob, "")
	bobSync.once(0)
	r = call(bob, "PUT", "/_matrix/client/v3/profile/"+esc(bob.UserID)+"/displayname", map[string]any{"displayname": "Bobby Tables"})
	expectOK(t, r, "set displayname")
	r = call(alice, "GET", "/_matrix/client/v3/profile/"+esc(bob.UserID)+"/displayname", nil)
	expectOK(t, r, "get displayname")
	if str(r.Body, "displayname") != "Bobby Tables" {
		t.Errorf("displayname = %s, want Bobby Tables", r.Raw)
	}
	r = call(alice, "GET", "/_matrix/client/v3/profile/"+esc(bob.UserID), nil)
	expectOK(t, r, "get profile")
	if str(r.Body, "displayname") != "Bobby Tables" {
		t.Errorf("profile = %s, want displayname Bobby Tables", r.Raw)
	}
	r = stateEvent(alice, roomID, "m.room.member", bob.UserID)
	expectOK(t, r, "bob's member event")
	if str(r.Body, "displayname") != "Bobby Tables" || str(r.Body, "membership") != "join" {
		t.Errorf("bob's member event after displayname change = %s, want join with displayname Bobby Tables", r.Raw)
	}
	bobSync.until("member event with the new displayname", func(Resp) bool {
		for _, e := range bobSync.tl[roomID] {
			if evType(e) == "m.room.member" && str(e, "state_key") == bob.UserID && str(obj(e, "content"), "displayname") == "Bobby Tables" {
				return true
			}
		}
		return false
	})

	// Deactivation (account_deactivation.yaml) with UIA; then login fails with 403
	// M_FORBIDDEN or M_USER_DEACTIVATED (login.yaml allows either).
	carol := srv.Register(t, "carol")
	carol2 := srv.Login(t, "carol")
	r = uiaPassword(carol, "POST", "/_matrix/client/v3/account/deactivate", map[string]any{}, testPassword)
	expectOK(t, r, "deactivate")
	expectErr(t, loginPassword(t, srv, "carol", testPassword), "login after deactivation", 403, "M_FORBIDDEN", "M_USER_DEACTIVATED")
	expectErr(t, whoami(carol), "token after deactivation", 401, "M_UNKNOWN_TOKEN")
	expectErr(t, whoami(carol2), "other device after deactivation", 401, "M_UNKNOWN_TOKEN")
}

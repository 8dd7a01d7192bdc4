package e2e

import "testing"

// TestPushersFollowTheirDevice: a pusher belongs to the device (access token) that set it up,
// as in Synapse, where pushers are removed with their access token: logging out that device
// removes it, and so does a password change that logs out the other devices; a password
// change with logout_devices false keeps them.
func TestPushersFollowTheirDevice(t *testing.T) {
	srv := StartServer(t)
	phone := srv.Register(t, "bob")
	laptop := srv.Login(t, "bob")
	pushers := func(c *Client) []string {
		var keys []string
		for _, p := range list(c.MustDo("GET", "/_matrix/client/v3/pushers", nil).Body, "pushers") {
			keys = append(keys, str(p, "pushkey"))
		}
		return keys
	}
	setPusher := func(c *Client, key string) {
		c.MustDo("POST", "/_matrix/client/v3/pushers/set", map[string]any{"kind": "http", "app_id": "org.example.app",
			"pushkey": key, "app_display_name": "Example", "device_display_name": key, "lang": "en",
			"data": map[string]any{"url": "http://127.0.0.1:9/_matrix/push/v1/notify"}})
	}
	setPusher(phone, "phone")
	setPusher(laptop, "laptop")
	if got := pushers(laptop); len(got) != 2 {
		t.Fatalf("pushers %v, want phone and laptop", got)
	}

	phone.MustDo("POST", "/_matrix/client/v3/logout", map[string]any{})
	if got := pushers(laptop); len(got) != 1 || got[0] != "laptop" {
		t.Errorf("pushers after the phone logged out: %v, want [laptop]", got)
	}

	// A password change that keeps the other devices keeps their pushers.
	tablet := srv.Login(t, "bob")
	setPusher(tablet, "tablet")
	r := uiaPassword(laptop, "POST", "/_matrix/client/v3/account/password",
		map[string]any{"new_password": "correct horse battery", "logout_devices": false}, "correct horse battery")
	expectOK(t, r, "password change keeping devices")
	if got := pushers(laptop); len(got) != 2 {
		t.Errorf("pushers after a password change with logout_devices false: %v, want laptop and tablet", got)
	}
	// One that logs them out removes theirs and keeps the requester's.
	r = uiaPassword(laptop, "POST", "/_matrix/client/v3/account/password",
		map[string]any{"new_password": "correct horse battery"}, "correct horse battery")
	expectOK(t, r, "password change")
	if got := pushers(laptop); len(got) != 1 || got[0] != "laptop" {
		t.Errorf("pushers after a password change: %v, want [laptop]", got)
	}
}

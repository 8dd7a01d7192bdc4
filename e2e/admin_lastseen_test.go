package e2e

import (
	"net/http"
	"testing"
	"time"
)

// getWithUA sends an authenticated GET with the given User-Agent and returns its status.
func getWithUA(t *testing.T, c *Client, path, userAgent string) int {
	t.Helper()
	req, err := http.NewRequest("GET", c.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("User-Agent", userAgent)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// adminDevice returns the admin API's view of one of userID's devices.
func adminDevice(admin *Client, userID, deviceID string) map[string]any {
	return admin.MustDo("GET", "/_synapse/admin/v2/users/"+esc(userID)+"/devices/"+esc(deviceID), nil).Body
}

// TestAdminLastSeen: an authenticated request records when, from where and with which
// User-Agent the device was last seen, at most once a minute; the client's device list, the
// admin device list, whois (both paths) and the admin user list and query report it.
func TestAdminLastSeen(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice := srv.Register(t, "alice")
	before := time.Now().UnixMilli()
	const ua = "LatticeTest/1.0 (last seen)"
	if st := getWithUA(t, alice, "/_matrix/client/v3/account/whoami", ua); st != 200 {
		t.Fatalf("whoami: %d", st)
	}
	// Written behind the request: wait for it.
	var dev map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		dev = adminDevice(admin, alice.UserID, alice.DeviceID)
		if dev["last_seen_user_agent"] == ua {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin device never showed the user agent: %v", dev)
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen, _ := dev["last_seen_ts"].(float64)
	if int64(seen) < before || dev["last_seen_ip"] != "127.0.0.1" {
		t.Errorf("admin device: last_seen_ts %v (request at %d), last_seen_ip %v", dev["last_seen_ts"], before, dev["last_seen_ip"])
	}

	// The admin device list.
	r := admin.MustDo("GET", "/_synapse/admin/v2/users/"+esc(alice.UserID)+"/devices", nil)
	for _, d := range list(r.Body, "devices") {
		if str(d, "device_id") == alice.DeviceID && (d["last_seen_user_agent"] != ua || d["last_seen_ts"] != seen || d["last_seen_ip"] != "127.0.0.1") {
			t.Errorf("admin device list: %v", d)
		}
	}
	// The client's own device list.
	r = alice.MustDo("GET", "/_matrix/client/v3/devices", nil)
	for _, d := range list(r.Body, "devices") {
		if str(d, "device_id") == alice.DeviceID && (d["last_seen_ts"] != seen || d["last_seen_ip"] != "127.0.0.1") {
			t.Errorf("/devices: %v", d)
		}
	}
	// whois, Synapse's path and the spec's.
	for _, path := range []string{"/_synapse/admin/v1/whois/", "/_matrix/client/v3/admin/whois/"} {
		r = admin.MustDo("GET", path+esc(alice.UserID), nil)
		sessions := obj(r.Body, "devices", alice.DeviceID)["sessions"].([]any)
		conns := sessions[0].(map[string]any)["connections"].([]any)
		c := conns[0].(map[string]any)
		if c["user_agent"] != ua || c["ip"] != "127.0.0.1" || c["last_seen"] != seen {
			t.Errorf("%s: connection %v", path, c)
		}
	}
	// The admin user query and list: the latest of the devices' times.
	r = admin.MustDo("GET", "/_synapse/admin/v2/users/"+esc(alice.UserID), nil)
	if r.Body["last_seen_ts"] != seen {
		t.Errorf("user query last_seen_ts %v, want %v", r.Body["last_seen_ts"], seen)
	}
	r = admin.MustDo("GET", "/_synapse/admin/v2/users?name=alice", nil)
	if us := list(r.Body, "users"); len(us) != 1 || us[0]["last_seen_ts"] != seen {
		t.Errorf("user list: %s", r.Raw)
	}

	// Within the minute, another request changes nothing.
	if st := getWithUA(t, alice, "/_matrix/client/v3/account/whoami", "Another/2.0"); st != 200 {
		t.Fatalf("whoami: %d", st)
	}
	time.Sleep(500 * time.Millisecond)
	if dev = adminDevice(admin, alice.UserID, alice.DeviceID); dev["last_seen_user_agent"] != ua || dev["last_seen_ts"] != seen {
		t.Errorf("a second request within the minute was written: %v", dev)
	}
}

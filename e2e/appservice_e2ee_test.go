package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// mark returns the number of transactions the service has accepted so far.
func (a *fakeAS) mark() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.accepted)
}

// bodiesFrom returns the bodies of the transactions accepted after the first from, in order.
func (a *fakeAS) bodiesFrom(from int) []map[string]json.RawMessage {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []map[string]json.RawMessage
	for _, id := range a.accepted[from:] {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(a.bodies[id], &m); err != nil {
			a.t.Errorf("transaction %s: %v", id, err)
		}
		out = append(out, m)
	}
	return out
}

// waitBody waits until a transaction accepted after the first from matches cond, and
// returns it.
func (a *fakeAS) waitBody(what string, from int, cond func(map[string]json.RawMessage) bool) map[string]json.RawMessage {
	a.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, b := range a.bodiesFrom(from) {
			if cond(b) {
				return b
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("%s: no such transaction; bodies: %v", what, a.bodiesFrom(from))
	return nil
}

type deviceListsField struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

func deviceListsOf(b map[string]json.RawMessage) deviceListsField {
	var d deviceListsField
	_ = json.Unmarshal(b["org.matrix.msc3202.device_lists"], &d)
	return d
}

type toDeviceEntry struct {
	Type       string         `json:"type"`
	Sender     string         `json:"sender"`
	ToUserID   string         `json:"to_user_id"`
	ToDeviceID string         `json:"to_device_id"`
	Content    map[string]any `json:"content"`
}

// TestAppServiceEncryption checks the encryption data of transactions for a service with
// org.matrix.msc3202: the device list changes of the users sharing a room with its users
// (org.matrix.msc3202.device_lists changed and left), the to-device messages sent to its
// users' devices (de.sorunome.msc2409.to_device and org.matrix.msc2409.to_device, each once),
// and the key counts of those devices (org.matrix.msc3202.device_one_time_keys_count and
// device_unused_fallback_key_types).
func TestAppServiceEncryption(t *testing.T) {
	srv := StartServer(t)
	bridge := newFakeAS(t, "crypt")
	addAppServices(t, srv, bridge.registration(`  users:
    - exclusive: true
      regex: "@_crypt_.*"
  aliases: []
  rooms: []`, "org.matrix.msc3202: true"))
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	svc := bridge.asClient(t, srv)
	r := svc.MustDo("POST", "/_matrix/client/v3/register", map[string]any{"type": "m.login.application_service", "username": "_crypt_ghost"})
	ghost := &Client{t: t, srv: srv, UserID: r.Body["user_id"].(string), DeviceID: r.Body["device_id"].(string), Token: r.Body["access_token"].(string)}

	// The ghost joining alice's room: alice now shares a room with the service's users.
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	mark := bridge.mark()
	ghost.MustDo("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{})
	bridge.waitBody("device_lists.changed after the ghost's join", mark, func(b map[string]json.RawMessage) bool {
		return slices.Contains(deviceListsOf(b).Changed, alice.UserID)
	})

	// Alice's keys change: she is listed again; bob, who shares no room, is not.
	mark = bridge.mark()
	expectOK(t, uploadKeys(bob, map[string]any{"device_keys": deviceKeys(t, bob, newSigningKey(t))}), "bob's keys")
	expectOK(t, uploadKeys(alice, map[string]any{"device_keys": deviceKeys(t, alice, newSigningKey(t))}), "alice's keys")
	bridge.waitBody("device_lists.changed after alice's key upload", mark, func(b map[string]json.RawMessage) bool {
		return slices.Contains(deviceListsOf(b).Changed, alice.UserID)
	})
	for _, b := range bridge.bodiesFrom(mark) {
		if slices.Contains(deviceListsOf(b).Changed, bob.UserID) {
			t.Errorf("device list change of a user sharing no room with the service: %v", b)
		}
	}

	// The ghost's device has 2 one-time keys and a fallback key; alice claims one and sends
	// it a to-device message (with one to bob, not the service's).
	gk := newSigningKey(t)
	fallback := signed(t, map[string]any{"key": "fallback-key", "fallback": true}, ghost.UserID, "ed25519:"+ghost.DeviceID, gk)
	expectOK(t, uploadKeys(ghost, map[string]any{
		"device_keys":   deviceKeys(t, ghost, gk),
		"one_time_keys": otks(t, ghost, gk, "G", 2),
		"fallback_keys": map[string]any{"signed_curve25519:GF": fallback},
	}), "ghost's keys")
	if id, _ := claimOne(alice, ghost); id == "" {
		t.Fatal("no one-time key of the ghost's device claimed")
	}
	mark = bridge.mark()
	sendToDevice(alice, "m.room.encrypted", "td1", map[string]any{
		ghost.UserID: map[string]any{ghost.DeviceID: map[string]any{"ciphertext": "for the ghost"}},
		bob.UserID:   map[string]any{bob.DeviceID: map[string]any{"ciphertext": "for bob"}},
	})
	b := bridge.waitBody("to-device message", mark, func(b map[string]json.RawMessage) bool {
		return b["de.sorunome.msc2409.to_device"] != nil
	})
	var td, tdOrg []toDeviceEntry
	_ = json.Unmarshal(b["de.sorunome.msc2409.to_device"], &td)
	_ = json.Unmarshal(b["org.matrix.msc2409.to_device"], &tdOrg)
	if len(td) != 1 || td[0].Type != "m.room.encrypted" || td[0].Sender != alice.UserID || td[0].ToUserID != ghost.UserID ||
		td[0].ToDeviceID != ghost.DeviceID || td[0].Content["ciphertext"] != "for the ghost" {
		t.Errorf("de.sorunome.msc2409.to_device: %s", b["de.sorunome.msc2409.to_device"])
	}
	if string(b["org.matrix.msc2409.to_device"]) != string(b["de.sorunome.msc2409.to_device"]) || len(tdOrg) != 1 {
		t.Errorf("org.matrix.msc2409.to_device %s differs from de.sorunome.msc2409.to_device", b["org.matrix.msc2409.to_device"])
	}
	var counts map[string]map[string]map[string]int
	if err := json.Unmarshal(b["org.matrix.msc3202.device_one_time_keys_count"], &counts); err != nil || counts[ghost.UserID][ghost.DeviceID]["signed_curve25519"] != 1 {
		t.Errorf("org.matrix.msc3202.device_one_time_keys_count (want 1 key left): %s", b["org.matrix.msc3202.device_one_time_keys_count"])
	}
	var fallbacks map[string]map[string][]string
	if err := json.Unmarshal(b["org.matrix.msc3202.device_unused_fallback_key_types"], &fallbacks); err != nil ||
		!slices.Equal(fallbacks[ghost.UserID][ghost.DeviceID], []string{"signed_curve25519"}) {
		t.Errorf("org.matrix.msc3202.device_unused_fallback_key_types: %s", b["org.matrix.msc3202.device_unused_fallback_key_types"])
	}

	// Alice leaves: she shares no room with the service's users any more.
	mark = bridge.mark()
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{})
	bridge.waitBody("device_lists.left after alice's leave", mark, func(b map[string]json.RawMessage) bool {
		return slices.Contains(deviceListsOf(b).Left, alice.UserID)
	})

	// Each to-device message went in exactly one transaction.
	n := 0
	for _, b := range bridge.bodiesFrom(0) {
		var entries []toDeviceEntry
		_ = json.Unmarshal(b["de.sorunome.msc2409.to_device"], &entries)
		for _, e := range entries {
			if e.ToUserID != ghost.UserID {
				t.Errorf("to-device message for a user outside the namespace: %+v", e)
			}
			n++
		}
	}
	if n != 1 {
		t.Errorf("the to-device message was in %d transactions, want 1", n)
	}
}

// TestAppServiceReload checks that SIGHUP reads the registration files again: a file that
// now holds another service takes effect (the old token is refused, the new service is
// pushed its events), and a broken file changes nothing.
func TestAppServiceReload(t *testing.T) {
	srv := StartServer(t)
	first := newFakeAS(t, "first")
	addAppServices(t, srv, first.registration(`  users:
    - exclusive: true
      regex: "@_first_.*"`, ""))
	alice := srv.Register(t, "alice")
	const whoami = "/_matrix/client/v3/account/whoami"
	if r := first.asClient(t, srv).MustDo("GET", whoami, nil); r.Body["user_id"] != "@_first_bot:"+srv.Name {
		t.Fatalf("whoami as the first service: %s", r.Raw)
	}

	second := newFakeAS(t, "second")
	path := filepath.Join(srv.DataDir, "appservice-0.yaml")
	if err := os.WriteFile(path, []byte(second.registration(`  users:
    - exclusive: true
      regex: "@_second_.*"`, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	hangup := func() {
		if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	hangup()
	svc := second.asClient(t, srv)
	deadline := time.Now().Add(10 * time.Second)
	for call(svc, "GET", whoami, nil).Status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the second service's token is not accepted after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	expectErr(t, call(first.asClient(t, srv), "GET", whoami, nil), "the removed service's token", 401, "M_UNKNOWN_TOKEN")
	ghost := "@_second_ghost:" + srv.Name
	svc.MustDo("POST", "/_matrix/client/v3/register", map[string]any{"type": "m.login.application_service", "username": "_second_ghost", "inhibit_login": true})
	room := alice.CreateRoom(map[string]any{})
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": ghost})
	second.waitEvents("invite of the new service's user", 10*time.Second, func(evs []map[string]any) bool {
		for _, e := range evs {
			if e["type"] == "m.room.member" && e["state_key"] == ghost {
				return true
			}
		}
		return false
	})

	// A broken file: the running registration stays.
	if err := os.WriteFile(path, []byte("id: [not a registration"), 0o600); err != nil {
		t.Fatal(err)
	}
	hangup()
	time.Sleep(500 * time.Millisecond)
	expectOK(t, call(svc, "GET", whoami, nil), "whoami after a failed reload")
	svc.MustDo("POST", as("/_matrix/client/v3/join/"+esc(room), ghost), map[string]any{})
	msg2 := alice.Send(room, "after the join")
	second.waitEvents("messages after a failed reload", 10*time.Second, func(evs []map[string]any) bool { return hasEvent(evs, msg2) })
	if len(first.delivered()) != 0 {
		t.Errorf("the removed service was pushed %d events", len(first.delivered()))
	}
}

package e2e

import "testing"

// TestFederationJoinDeviceLists: when bob joins a room of another server, his incremental
// /sync lists in device_lists.changed the room's members and himself (end_to_end_encryption.md,
// "Tracking the device list for a user": his client must (re)query everyone it now shares an
// encrypted room with, his own other devices among them).
func TestFederationJoinDeviceLists(t *testing.T) {
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bs := newSyncer(bob, "")
	bs.once(0)
	if r := joinRoom(bob, roomID, a.Name); r.Status != 200 {
		t.Fatalf("bob joining over federation: %d %s", r.Status, r.Raw)
	}
	changed := map[string]bool{}
	bs.until("bob's join in his /sync", func(r Resp) bool {
		for _, u := range obj(r.Body, "device_lists")["changed"].([]any) {
			changed[u.(string)] = true
		}
		return obj(r.Body, "rooms", "join", roomID) != nil
	})
	if !changed[alice.UserID] || !changed[bob.UserID] {
		t.Errorf("device_lists.changed after bob joined a remote room: %v, want alice and bob", changed)
	}
}


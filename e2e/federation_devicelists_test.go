package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

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

// TestFederationDeviceListsToNewServer: when a user of another server joins a room where
// alice is, that server is sent m.device_list_update for alice's devices, so that it learns
// them (and can track them) without waiting for alice to change a device. They leave with
// the next transaction to that server (alice's message here), after it has its join.
func TestFederationDeviceListsToNewServer(t *testing.T) {
	ca := newTestCA(t)
	lat := startFederatedServer(t, ca)
	fake := startFakeHomeserver(t, ca)
	alice := lat.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})

	var mu sync.Mutex
	var updates []map[string]any // m.device_list_update contents received by the fake server
	fake.setExtra(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != "PUT" || !strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/send/") {
			return false
		}
		raw, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(raw)) // the default handler records the PDUs
		var txn struct {
			EDUs []struct {
				Type    string         `json:"edu_type"`
				Content map[string]any `json:"content"`
			} `json:"edus"`
		}
		_ = json.Unmarshal(raw, &txn)
		mu.Lock()
		for _, e := range txn.EDUs {
			if e.Type == "m.device_list_update" {
				updates = append(updates, e.Content)
			}
		}
		mu.Unlock()
		return false
	})
	eve := "@eve:" + string(fake.name)
	if _, err := fake.join(t, spec.ServerName(lat.Name), roomID, eve); err != nil {
		t.Fatalf("the fake server joining as %s: %v", eve, err)
	}
	alice.Send(roomID, "welcome, eve")
	done, state := poll(20*time.Second, 100*time.Millisecond, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		devices := []string{}
		for _, u := range updates {
			if u["user_id"] == alice.UserID {
				devices = append(devices, str(u, "device_id"))
			}
		}
		return slices.Contains(devices, alice.DeviceID), "updates for alice's devices: " + strings.Join(devices, ",")
	})
	if !done {
		t.Errorf("the joining server got no m.device_list_update for alice's device %s (%s)", alice.DeviceID, state)
	}
}

package e2e

import "testing"

// TestSyncStateAfter: with use_state_after, /sync answers state_after (the state at the end
// of the timeline) instead of state: the whole state on an initial sync, the changes since
// the last sync on an incremental one (also when the timeline is limited), and an empty
// list for a room whose only news is ephemeral.
func TestSyncStateAfter(t *testing.T) {
	s := StartServer(t)
	alice := s.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "before"})
	stateAfter := func(r Resp) (map[string]string, map[string]any) {
		t.Helper()
		jr := obj(r.Body, "rooms", "join", roomID)
		if r.Status != 200 || jr == nil {
			t.Fatalf("sync: %d %s", r.Status, r.Raw)
		}
		if _, ok := jr["state"]; ok {
			t.Fatalf("sync with use_state_after answered state: %v", jr)
		}
		out := map[string]string{}
		for _, e := range list(obj(jr, "state_after"), "events") {
			out[evType(e)+"|"+str(e, "state_key")] = str(obj(e, "content"), "name") + str(obj(e, "content"), "topic")
		}
		return out, jr
	}
	r := call(alice, "GET", "/_matrix/client/v3/sync?use_state_after=true", nil)
	full, _ := stateAfter(r)
	if _, ok := full["m.room.create|"]; !ok || full["m.room.name|"] != "before" {
		t.Fatalf("initial state_after %v, want the whole state with the name", full)
	}
	since := str(r.Body, "next_batch")
	putState(alice, roomID, "m.room.name", "", map[string]any{"name": "after"})
	for i := range 12 {
		say(alice, roomID, "message "+string(rune('a'+i)))
	}
	putState(alice, roomID, "m.room.topic", "", map[string]any{"topic": "t"})
	r = call(alice, "GET", "/_matrix/client/v3/sync?timeout=0&use_state_after=true&filter="+esc(`{"room":{"timeline":{"limit":3}}}`)+"&since="+esc(since), nil)
	delta, jr := stateAfter(r)
	if len(delta) != 2 || delta["m.room.name|"] != "after" || delta["m.room.topic|"] != "t" {
		t.Fatalf("incremental state_after %v, want the new name and topic only", delta)
	}
	if tl := obj(jr, "timeline"); tl["limited"] != true {
		t.Fatalf("timeline not limited: %v", tl)
	}
	// Without use_state_after the response is as before: state, no state_after.
	r = call(alice, "GET", "/_matrix/client/v3/sync?timeout=0&since="+esc(since), nil)
	if jr := obj(r.Body, "rooms", "join", roomID); jr["state_after"] != nil || jr["state"] == nil {
		t.Fatalf("sync without use_state_after: %v", jr)
	}
}

package e2e

import (
	"fmt"
	"testing"
)

// notifiedEvents returns the event IDs listed by c's GET /notifications.
func notifiedEvents(c *Client) map[string]bool {
	c.t.Helper()
	out := map[string]bool{}
	for _, n := range list(c.MustDo("GET", "/_matrix/client/v3/notifications", nil).Body, "notifications") {
		out[evID(obj(n, "event"))] = true
	}
	return out
}

// notificationCount returns unread_notifications.notification_count of roomID in an initial
// /sync of c.
func notificationCount(c *Client, roomID string) any {
	c.t.Helper()
	return obj(c.Sync("", "", 0).Body, "rooms", "join", roomID, "unread_notifications")["notification_count"]
}

// TestPushRuleChangeAppliesToNextEvent: a push rule change applies to the very next event,
// also when it is the first event after a restart (push.md: rules are evaluated for every
// event; a cached copy must never stand in for the user's stored rules). bob mutes a room
// (a room rule with no actions) and alice's next message must not notify him; after a
// restart, bob's do-not-disturb (.m.rule.master enabled) silences the first message too.
func TestPushRuleChangeAppliesToNextEvent(t *testing.T) {
	srv := StartServer(t)
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, roomID)
	// Three members, so that the one-to-one rule does not apply and .m.rule.message decides.
	join(srv.Register(t, "carol"), roomID)
	loud := alice.Send(roomID, "before the mute")
	if !notifiedEvents(bob)[loud] {
		t.Fatalf("the message before the mute did not notify bob")
	}

	bob.MustDo("PUT", "/_matrix/client/v3/pushrules/global/room/"+esc(roomID), map[string]any{"actions": []any{}})
	muted := alice.Send(roomID, "right after the mute")
	if notifiedEvents(bob)[muted] {
		t.Errorf("the first message after bob muted the room notified him")
	}
	bob.MustDo("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/receipt/m.read/%s", esc(roomID), esc(loud)), map[string]any{})
	if n := notificationCount(bob, roomID); n != float64(0) {
		t.Errorf("unread notification_count after the mute = %v, want 0", n)
	}

	// The first event after a restart is judged by the stored rules, too.
	srv.Stop()
	srv.Start()
	afterRestart := alice.Send(roomID, "first after the restart")
	if notifiedEvents(bob)[afterRestart] {
		t.Errorf("the first message after a restart notified bob in his muted room")
	}
	if n := notificationCount(bob, roomID); n != float64(0) {
		t.Errorf("unread notification_count after the restart = %v, want 0", n)
	}

	// Unmuting and do-not-disturb (enabling the default .m.rule.master) apply at once, too.
	bob.MustDo("DELETE", "/_matrix/client/v3/pushrules/global/room/"+esc(roomID), nil)
	unmuted := alice.Send(roomID, "after the unmute")
	if !notifiedEvents(bob)[unmuted] {
		t.Errorf("the first message after bob unmuted the room did not notify him")
	}
	bob.MustDo("PUT", "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled", map[string]any{"enabled": true})
	srv.Stop()
	srv.Start()
	dnd := alice.Send(roomID, "during do-not-disturb")
	if notifiedEvents(bob)[dnd] {
		t.Errorf("the first message after a restart notified bob during do-not-disturb")
	}
}


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

// TestPushRulesForClients: what clients read back. The historical dont_notify action is
// accepted and read back as sent, and a rule with it mutes like [] (push.md, "Historical
// Actions"); an initial /sync carries m.push_rules in its global account data even for a
// user who never changed a rule; and when bob joins the room that replaces a room he had
// muted, his room rule and his override rule naming the old room are copied to the new one
// (room_upgrades.md: "the server should automatically transfer/replicate some of the user's
// personalized settings such as notifications").
func TestPushRulesForClients(t *testing.T) {
	srv := StartServer(t)
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")

	var rules map[string]any
	for _, e := range list(obj(bob.Sync("", "", 0).Body, "account_data"), "events") {
		if evType(e) == "m.push_rules" {
			rules = obj(e, "content", "global")
		}
	}
	if len(list(rules, "override")) == 0 || len(list(rules, "underride")) == 0 {
		t.Errorf("initial /sync of a user with default rules: m.push_rules global = %v", rules)
	}
	body := allRooms(10, 1)
	body["extensions"] = map[string]any{"account_data": map[string]any{"enabled": true}}
	rules = nil
	for _, e := range list(obj(slidingOK(t, bob, "", 0, body).Body, "extensions", "account_data"), "global") {
		if evType(e) == "m.push_rules" {
			rules = obj(e, "content", "global")
		}
	}
	if len(list(rules, "override")) == 0 {
		t.Errorf("first sliding sync of a user with default rules: m.push_rules global = %v", rules)
	}

	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, roomID)
	join(srv.Register(t, "carol"), roomID)
	rulePath := "/_matrix/client/v3/pushrules/global/"
	bob.MustDo("PUT", rulePath+"room/"+esc(roomID), map[string]any{"actions": []any{"dont_notify"}})
	got := bob.MustDo("GET", rulePath+"room/"+esc(roomID), nil).Body
	if a, _ := got["actions"].([]any); len(a) != 1 || a[0] != "dont_notify" {
		t.Errorf("room rule read back with actions %v, want [dont_notify]", got["actions"])
	}
	if muted := alice.Send(roomID, "muted by dont_notify"); notifiedEvents(bob)[muted] {
		t.Errorf("a room rule with [dont_notify] did not mute the room")
	}
	keyword := map[string]any{"actions": []any{"notify", map[string]any{"set_tweak": "highlight"}}, "conditions": []any{
		map[string]any{"kind": "event_match", "key": "room_id", "pattern": roomID},
		map[string]any{"kind": "event_match", "key": "content.body", "pattern": "*lunch*"},
	}}
	bob.MustDo("PUT", rulePath+"override/lunch-"+esc(roomID), keyword)

	up := alice.MustDo("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/upgrade", esc(roomID)), map[string]any{"new_version": "11"})
	newID := str(up.Body, "replacement_room")
	join(bob, newID)
	join(bob, newID) // a second join copies nothing twice
	got = bob.MustDo("GET", rulePath+"room/"+esc(newID), nil).Body
	if a, _ := got["actions"].([]any); len(a) != 1 || a[0] != "dont_notify" || got["enabled"] != true {
		t.Errorf("room rule copied to the new room: %s", jsonString(got))
	}
	got = bob.MustDo("GET", rulePath+"override/lunch-"+esc(newID), nil).Body
	conds := list(got, "conditions")
	if len(conds) != 2 || str(conds[0], "pattern") != newID || str(conds[1], "pattern") != "*lunch*" || len(got["actions"].([]any)) != 2 {
		t.Errorf("override rule copied to the new room: %s", jsonString(got))
	}
	if r := bob.Do("GET", rulePath+"override/lunch-"+esc(roomID), nil); r.Status != 200 {
		t.Errorf("the old room's override rule is gone: %d %s", r.Status, r.Raw)
	}
	n := 0
	for _, r := range list(bob.MustDo("GET", rulePath, nil).Body, "override") {
		if str(r, "rule_id") == "lunch-"+newID {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d copies of the override rule, want 1", n)
	}
	join(srv.Login(t, "carol"), newID)
	quiet := alice.Send(newID, "muted in the new room")
	lunch := alice.Send(newID, "lunch anyone?")
	notes := notifiedEvents(bob)
	if notes[quiet] || !notes[lunch] {
		t.Errorf("notifications in the new room: muted message %v (want false), lunch %v (want true)", notes[quiet], notes[lunch])
	}
}

package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestPollPushRules (MSC3930): a poll started or ended in a DM notifies with a sound, in a
// bigger room without; both the stable m.poll.* and the MSC3381 unstable event types do, and
// GET /pushrules lists the stable and the org.matrix.msc3930 rules.
func TestPollPushRules(t *testing.T) {
	srv := StartServer(t)
	alice, bob, carol := srv.Register(t, "alice"), srv.Register(t, "bob"), srv.Register(t, "carol")
	dm := alice.CreateRoom(map[string]any{"preset": "trusted_private_chat", "is_direct": true, "invite": []string{bob.UserID}})
	group := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, dm)
	join(bob, group)
	join(carol, group)

	type sent struct {
		id    string
		sound bool
	}
	var want []sent
	n := 0
	for _, roomID := range []string{dm, group} {
		for _, typ := range []string{"org.matrix.msc3381.poll.start", "m.poll.start", "org.matrix.msc3381.poll.end", "m.poll.end"} {
			n++
			r := sendTxn(alice, roomID, typ, fmt.Sprintf("poll%d", n), map[string]any{"body": "a poll", "n": n})
			expectOK(t, r, "send "+typ)
			want = append(want, sent{str(r.Body, "event_id"), roomID == dm})
		}
	}
	// A poll response does not notify.
	resp := str(sendTxn(alice, dm, "org.matrix.msc3381.poll.response", "resp", map[string]any{"body": "x"}).Body, "event_id")
	last := alice.Send(dm, "after the polls")

	var notes []event
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		notes = list(bob.MustDo("GET", "/_matrix/client/v3/notifications?limit=50", nil).Body, "notifications")
		if len(notes) > 0 && evID(obj(notes[0], "event")) == last || time.Now().After(deadline) {
			break
		}
	}
	got := map[string]event{}
	for _, note := range notes {
		got[evID(obj(note, "event"))] = note
	}
	for _, w := range want {
		note, ok := got[w.id]
		if !ok {
			t.Errorf("poll event %s (DM %v) did not notify bob", w.id, w.sound)
			continue
		}
		sound := false
		actions, _ := note["actions"].([]any)
		for _, a := range actions {
			if m, ok := a.(map[string]any); ok && m["set_tweak"] == "sound" {
				sound = true
			}
		}
		if sound != w.sound {
			t.Errorf("poll event %s: actions %v, want sound %v", w.id, actions, w.sound)
		}
	}
	if _, ok := got[resp]; ok || resp == "" {
		t.Errorf("the poll response %q notified bob", resp)
	}

	rules := obj(bob.MustDo("GET", "/_matrix/client/v3/pushrules/", nil).Body, "global")
	ruleIDs := map[string]bool{}
	for _, r := range list(rules, "underride") {
		ruleIDs[str(r, "rule_id")] = true
	}
	for _, id := range []string{".m.rule.poll_start_one_to_one", ".m.rule.poll_start", ".m.rule.poll_end_one_to_one", ".m.rule.poll_end",
		".org.matrix.msc3930.rule.poll_start_one_to_one", ".org.matrix.msc3930.rule.poll_start",
		".org.matrix.msc3930.rule.poll_end_one_to_one", ".org.matrix.msc3930.rule.poll_end"} {
		if !ruleIDs[id] {
			t.Errorf("GET /pushrules/: no underride rule %s", id)
		}
	}
	// The poll rules follow the message rule they mirror (MSC3930): disabling .m.rule.message
	// disables the generic poll rules, and enabling a poll rule enables them all again.
	bob.MustDo("PUT", "/_matrix/client/v3/pushrules/global/underride/.m.rule.message/enabled", map[string]any{"enabled": false})
	for _, id := range []string{".m.rule.poll_start", ".org.matrix.msc3930.rule.poll_end"} {
		if r := bob.MustDo("GET", "/_matrix/client/v3/pushrules/global/underride/"+id+"/enabled", nil); r.Body["enabled"] != false {
			t.Errorf("%s after disabling .m.rule.message: %s", id, r.Raw)
		}
	}
	if r := bob.MustDo("GET", "/_matrix/client/v3/pushrules/global/underride/.m.rule.poll_start_one_to_one/enabled", nil); r.Body["enabled"] != true {
		t.Errorf("disabling .m.rule.message disabled the one-to-one poll rule: %s", r.Raw)
	}
	bob.MustDo("PUT", "/_matrix/client/v3/pushrules/global/underride/.org.matrix.msc3930.rule.poll_start/enabled", map[string]any{"enabled": true})
	if r := bob.MustDo("GET", "/_matrix/client/v3/pushrules/global/underride/.m.rule.message/enabled", nil); r.Body["enabled"] != true {
		t.Errorf(".m.rule.message after enabling a poll rule: %s", r.Raw)
	}
	// Disabling the DM rule leaves the generic one: the poll still notifies, without a sound.
	bob.MustDo("PUT", "/_matrix/client/v3/pushrules/global/underride/.org.matrix.msc3930.rule.poll_start_one_to_one/enabled", map[string]any{"enabled": false})
	if r := bob.MustDo("GET", "/_matrix/client/v3/pushrules/global/underride/.org.matrix.msc3930.rule.poll_start_one_to_one/enabled", nil); r.Body["enabled"] != false {
		t.Errorf("enabled after disabling: %s", r.Raw)
	}
	again := str(sendTxn(alice, dm, "org.matrix.msc3381.poll.start", "again", map[string]any{"body": "again"}).Body, "event_id")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		notes = list(bob.MustDo("GET", "/_matrix/client/v3/notifications?limit=1", nil).Body, "notifications")
		if len(notes) > 0 && evID(obj(notes[0], "event")) == again {
			if actions, _ := notes[0]["actions"].([]any); len(actions) != 1 || actions[0] != "notify" {
				t.Errorf("a DM poll with the one-to-one rule disabled: actions %v, want [notify]", actions)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a DM poll with the one-to-one rule disabled did not notify: %v", notes)
		}
	}
}

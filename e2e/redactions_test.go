package e2e

import (
	"fmt"
	"testing"
)

// TestRedactionCarriesRedactsBothWays checks that a redaction served over the client-server
// API names its target both at the top level and in content, whatever the room version: room
// version 11 moved redacts into content, and servers should add it at the top level for
// older clients and in content in older room versions for newer clients (room version 11,
// "Moving the redacts property of m.room.redaction events to a content property").
func TestRedactionCarriesRedactsBothWays(t *testing.T) {
	srv := StartServer(t)
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	sy := newSyncer(bob, "")
	for i, ver := range []string{"10", "11"} {
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_version": ver})
		join(bob, room)
		target := alice.Send(room, "oops")
		sy.waitEvent(room, target)
		r := alice.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/redact/%s/red%d", esc(room), esc(target), i),
			map[string]any{"reason": "typo"})
		redaction := str(r.Body, "event_id")
		sy.waitEvent(room, redaction)

		check := func(where string, e event) {
			t.Helper()
			if e == nil {
				t.Errorf("v%s %s: redaction %s not found", ver, where, redaction)
				return
			}
			if top, inContent := str(e, "redacts"), str(obj(e, "content"), "redacts"); top != target || inContent != target {
				t.Errorf("v%s %s: redacts %q, content.redacts %q, want both %s: %v", ver, where, top, inContent, target, e)
			}
			if reason := str(obj(e, "content"), "reason"); reason != "typo" {
				t.Errorf("v%s %s: content.reason %q", ver, where, reason)
			}
		}
		byID := func(evs []event, id string) event {
			for _, e := range evs {
				if evID(e) == id {
					return e
				}
			}
			return nil
		}
		check("/sync", byID(sy.tl[room], redaction))
		page := getMessages(bob, room, "b", "", 10)
		check("/messages", byID(page.chunk, redaction))
		check("/messages redacted_because", obj(byID(page.chunk, target), "unsigned", "redacted_because"))
		ev := bob.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/event/%s", esc(room), esc(redaction)), nil)
		check("/event", ev.Body)
		cx := bob.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/context/%s", esc(room), esc(redaction)), nil)
		check("/context", obj(cx.Body, "event"))
	}
}

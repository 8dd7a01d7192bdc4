package e2e

import "testing"

// TestRepeatedStateIsNoOp: joining a room one is joined to, or setting a state event to the
// content it already has (same type, state key, content and sender), creates no event and
// answers with the existing one, as Synapse does and clients that retry expect; a different
// content or sender is a new event.
func TestRepeatedStateIsNoOp(t *testing.T) {
	srv := StartServer(t)
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, roomID)
	count := func() int {
		return len(paginateBack(alice, roomID, "", 50, nil))
	}
	before := count()

	join(bob, roomID)
	if n := count(); n != before {
		t.Errorf("a second join added %d events", n-before)
	}
	bobMember := stateEvent(bob, roomID, "m.room.member", bob.UserID)
	again := putState(bob, roomID, "m.room.member", bob.UserID, bobMember.Body)
	expectOK(t, again, "PUT own member event unchanged")

	topic := map[string]any{"topic": "stable"}
	first := putState(alice, roomID, "m.room.topic", "", topic)
	expectOK(t, first, "set topic")
	second := putState(alice, roomID, "m.room.topic", "", topic)
	expectOK(t, second, "set the same topic again")
	if a, b := str(first.Body, "event_id"), str(second.Body, "event_id"); a == "" || a != b {
		t.Errorf("same topic twice: event IDs %q and %q, want the existing one", a, b)
	}
	if n := count(); n != before+1 {
		t.Errorf("%d new events after a repeated join, member and topic, want 1 (the first topic)", n-before)
	}

	other := putState(alice, roomID, "m.room.topic", "", map[string]any{"topic": "changed"})
	if str(other.Body, "event_id") == str(first.Body, "event_id") {
		t.Errorf("a different topic returned the old event")
	}
	if n := count(); n != before+2 {
		t.Errorf("a changed topic made %d events, want 1", n-before-1)
	}
}

package e2e

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestFederationInteropServerACL: the server-server API's "Server Access Control Lists".
// The fake server (on 127.0.0.2: ACLs ignore ports, and Lattice is on 127.0.0.1) is in a
// Lattice room; its typing EDU reaches alice's /sync. Once alice's m.room.server_acl denies
// 127.0.0.2, what the fake pushes in /send is ignored: its message PDU gets an error in the
// transaction's result, and neither the PDU, nor a typing EDU, nor a read receipt shows up in
// alice's /sync, while her own message after them does. The same holds for a message of
// the denied server pushed by a server the ACL allows.
func TestFederationInteropServerACL(t *testing.T) {
	lat, h := startInteropOn(t, "127.0.0.2")
	alice := lat.Register(t, "alice")
	room, as, eve := joinLatticeRoom(t, lat, h, alice, gomatrixserverlib.RoomVersionV10)
	typing := func(on bool) gomatrixserverlib.EDU {
		js, _ := json.Marshal(map[string]any{"room_id": room.id, "user_id": eve, "typing": on})
		return gomatrixserverlib.EDU{Type: spec.MTyping, Content: js}
	}
	ephemeral := func(r Resp, typ string) []event {
		return onlyType(list(obj(r.Body, "rooms", "join", room.id, "ephemeral"), "events"), typ)
	}
	eveTyping := func(r Resp) bool {
		for _, e := range ephemeral(r, "m.typing") {
			users, _ := obj(e, "content")["user_ids"].([]any)
			if slices.Contains(users, any(eve)) {
				return true
			}
		}
		return false
	}

	// Allowed: eve's typing reaches alice.
	if r := h.fake.sendTxn(t, h.lat, nil, []gomatrixserverlib.EDU{typing(true)}); r.Status != 200 {
		t.Fatalf("/send with a typing EDU: %d %s", r.Status, r.Raw)
	}
	as.until("eve typing before the ACL", eveTyping)
	if r := h.fake.sendTxn(t, h.lat, nil, []gomatrixserverlib.EDU{typing(false)}); r.Status != 200 {
		t.Fatalf("/send with a typing EDU: %d %s", r.Status, r.Raw)
	}
	as.until("eve no longer typing", func(r Resp) bool { return len(ephemeral(r, "m.typing")) > 0 && !eveTyping(r) })

	acl := putState(alice, room.id, "m.room.server_acl", "", map[string]any{
		"allow": []string{"*"}, "deny": []string{"127.0.0.2"}, "allow_ip_literals": true})
	if acl.Status != 200 {
		t.Fatalf("alice's server ACL: %d %s", acl.Status, acl.Raw)
	}
	aclID := str(acl.Body, "event_id")
	as.waitEvent(room.id, aclID)
	if h.waitSent(30*time.Second, func(p gomatrixserverlib.PDU) bool { return p.EventID() == aclID }) == nil {
		t.Fatalf("the ACL %s never reached the fake (30 s)", aclID)
	}

	// Relayed: a message of the fake, pushed by another server the ACL allows (on
	// 127.0.0.1). Its sender's server is denied: it is ignored all the same.
	relay := startFakeHomeserver(t, h.ca)
	relayed := h.emit(t, room, eve, "m.room.message", nil, message("relayed from a denied server"))
	r := relay.sendPDUs(t, h.lat, pduRaws([]gomatrixserverlib.PDU{relayed}))
	if r.Status != 200 {
		t.Fatalf("/send of the relay: %d %s, want 200 with per-PDU results", r.Status, r.Raw)
	}
	if res, ok := pduResult(r, relayed.EventID()); !ok || str(res, "error") == "" {
		t.Errorf("/send of the relay: the denied server's message %s has result %v (present %v), want an error: %s", relayed.EventID(), res, ok, r.Raw)
	}

	// Denied: a message, a typing EDU and a receipt for the ACL event.
	msg := h.emit(t, room, eve, "m.room.message", nil, message("from a denied server"))
	receipt, _ := json.Marshal(map[string]any{room.id: map[string]any{"m.read": map[string]any{
		eve: map[string]any{"event_ids": []string{aclID}, "data": map[string]any{"ts": time.Now().UnixMilli()}}}}})
	r = h.fake.sendTxn(t, h.lat, pduRaws([]gomatrixserverlib.PDU{msg}),
		[]gomatrixserverlib.EDU{typing(true), {Type: spec.MReceipt, Content: receipt}})
	if r.Status != 200 {
		t.Fatalf("/send from the denied server: %d %s, want 200 with per-PDU results", r.Status, r.Raw)
	}
	if res, ok := pduResult(r, msg.EventID()); !ok || str(res, "error") == "" {
		t.Errorf("/send from the denied server: the message %s has result %v (present %v), want an error: %s", msg.EventID(), res, ok, r.Raw)
	}

	marker := say(alice, room.id, "after the denied traffic")
	var seen []Resp
	as.until("alice's marker", func(r Resp) bool {
		seen = append(seen, r)
		return as.seen[marker]
	})
	seen = append(seen, as.once(0))
	for _, r := range seen {
		if eveTyping(r) {
			t.Errorf("the typing EDU of the denied server reached alice's /sync: %.1500s", r.Raw)
		}
		for _, e := range ephemeral(r, "m.receipt") {
			if obj(e, "content", aclID, "m.read", eve) != nil {
				t.Errorf("the receipt of the denied server reached alice's /sync: %.1500s", r.Raw)
			}
		}
	}
	for _, ev := range []gomatrixserverlib.PDU{msg, relayed} {
		if as.seen[ev.EventID()] {
			t.Errorf("the message %s of the denied server reached alice's /sync", ev.EventID())
		}
		if r := alice.Do("GET", "/_matrix/client/v3/rooms/"+esc(room.id)+"/event/"+esc(ev.EventID()), nil); r.Status == 200 {
			t.Errorf("GET the denied server's message %s: %d %s, want it unknown", ev.EventID(), r.Status, r.Raw)
		}
	}
}

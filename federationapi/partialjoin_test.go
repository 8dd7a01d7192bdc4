package federationapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/lattice-chat/lattice/roomserver"
)

// TestSendJoinOmitMembers checks send_join v2 with omit_members through the router: a value
// other than true or false is refused before the join happens; with true, state holds every
// non-member state event and only the memberships their auth needs (the creator, who set up
// the room, and the member who set the topic), the auth chain leaves out what state holds,
// and servers_in_room names this server.
func TestSendJoinOmitMembers(t *testing.T) {
	ts := newTestServer(t)
	rs := withRoomserver(t, ts)
	ctx := context.Background()
	const alice = "@alice:lattice.test"
	name := "Named"
	roomID, err := rs.CreateRoom(ctx, alice, "A", roomserver.CreateRoomRequest{Preset: roomserver.PresetPublicChat, Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		if _, err := rs.Join(ctx, fmt.Sprintf("@u%d:lattice.test", i), roomID, ""); err != nil {
			t.Fatal(err)
		}
	}
	pl := `{"users":{"@u3:lattice.test":50},"state_default":50,"events_default":0,"invite":0,"kick":50,"ban":50,"redact":50}`
	if _, err := rs.SetState(ctx, roomserver.Sender{UserID: alice, DeviceID: "A"}, roomID, "m.room.power_levels", "", json.RawMessage(pl)); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.SetState(ctx, roomserver.Sender{UserID: "@u3:lattice.test", DeviceID: "B"}, roomID, "m.room.topic", "", json.RawMessage(`{"topic":"by u3"}`)); err != nil {
		t.Fatal(err)
	}

	remote := newIdentity(t, "remote.test", "ed25519:r1")
	ts.cacheKeys(t, remote.keys(t, time.Now().Add(time.Hour)))
	room := url.PathEscape(roomID)
	code, body := ts.do(t, signedRequest(t, remote, ourName, "GET", "/_matrix/federation/v1/make_join/"+room+"/%40bob%3Aremote.test?ver=12", nil))
	if code != 200 {
		t.Fatalf("make_join: %d %v", code, body)
	}
	raw, _ := json.Marshal(body["event"])
	var proto gomatrixserverlib.ProtoEvent
	if err := json.Unmarshal(raw, &proto); err != nil {
		t.Fatal(err)
	}
	join, err := gomatrixserverlib.MustGetRoomVersion("12").NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), remote.name, remote.keyID, remote.priv)
	if err != nil {
		t.Fatal(err)
	}
	put := func(query string) (int, map[string]any) {
		return ts.do(t, signedRequest(t, remote, ourName, "PUT", "/_matrix/federation/v2/send_join/"+room+"/"+url.PathEscape(join.EventID())+query, json.RawMessage(join.JSON())))
	}
	if code, body := put("?omit_members=yes"); code != 400 || body["errcode"] != "M_INVALID_PARAM" {
		t.Fatalf("send_join with omit_members=yes: %d %v", code, body)
	}
	if m, _ := rs.Membership(ctx, roomID, "@bob:remote.test"); m != "" {
		t.Fatalf("bob's membership after a refused send_join: %q", m)
	}
	code, body = put("?omit_members=true")
	if code != 200 || body["members_omitted"] != true {
		t.Fatalf("send_join with omit_members=true: %d %v", code, body)
	}
	if got := fmt.Sprint(body["servers_in_room"]); got != "[lattice.test]" {
		t.Errorf("servers_in_room = %s, want [lattice.test]", got)
	}
	types := map[string]bool{}
	var members []string
	inState := map[string]bool{}
	for _, e := range body["state"].([]any) {
		ev := e.(map[string]any)
		types[ev["type"].(string)] = true
		if ev["type"] == "m.room.member" {
			members = append(members, ev["state_key"].(string))
		}
		raw, _ := json.Marshal(ev)
		id, _ := gomatrixserverlib.MustGetRoomVersion("12").NewEventFromUntrustedJSON(raw)
		inState[id.EventID()] = true
	}
	sort.Strings(members)
	for _, want := range []string{"m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility", "m.room.name", "m.room.topic"} {
		if !types[want] {
			t.Errorf("state has no %s", want)
		}
	}
	if got := strings.Join(members, ","); got != "@alice:lattice.test,@u3:lattice.test" {
		t.Errorf("state's memberships = %s, want the creator's and the topic setter's", got)
	}
	for _, e := range body["auth_chain"].([]any) {
		raw, _ := json.Marshal(e)
		ev, err := gomatrixserverlib.MustGetRoomVersion("12").NewEventFromUntrustedJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		if inState[ev.EventID()] {
			t.Errorf("auth_chain repeats %s (%s) of state", ev.EventID(), ev.Type())
		}
		if ev.Type() == "m.room.member" && strings.HasPrefix(*ev.StateKey(), "@u") && *ev.StateKey() != "@u3:lattice.test" {
			t.Errorf("auth_chain holds %s's membership, needed by no returned event", *ev.StateKey())
		}
	}
	if m, _ := rs.Membership(ctx, roomID, "@bob:remote.test"); m != "join" {
		t.Fatalf("bob's membership: %q", m)
	}
}

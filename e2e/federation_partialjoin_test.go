package e2e

// The resident side of partial-state joins: send_join v2 with omit_members=true (MSC3706,
// spec v1.6) answered by Lattice to the fake server of fedharness_test.go, and the answer
// checked with gomatrixserverlib as a joining server checks it.

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestFederationSendJoinOmitMembers: a Lattice room of each interop room version with 50
// members, power levels raised for two of them, who set the topic, guest access and a custom
// state event. The fake server joins one user with omit_members=true and another without.
//
// With omission: members_omitted, servers_in_room naming Lattice; state holds every
// non-member state event of the room and the memberships of exactly the creator, the two
// who set state and the room's five heroes (the room has no name); no other member's event is
// in state or auth_chain; and gomatrixserverlib's CheckSendJoinResponse, the joining side's
// check, accepts the answer (signatures, every state event allowed by its auth events from
// the answer, the join allowed by the returned state). Without: the full state as /state
// shows it, members_omitted false, also accepted by CheckSendJoinResponse.
func TestFederationSendJoinOmitMembers(t *testing.T) {
	ca := newTestCA(t)
	lat := startFederatedServer(t, ca)
	fake := startFakeHomeserver(t, ca)
	latName := spec.ServerName(lat.Name)
	verifier := &keyVerifier{keys: map[spec.ServerName]map[gomatrixserverlib.KeyID]ed25519.PublicKey{
		latName:   publishedKeys(t, fake, latName),
		fake.name: {fake.keyID: fake.priv.Public().(ed25519.PublicKey)},
	}}

	alice := lat.Register(t, "alice")
	users := make([]*Client, 49)
	for i := range users {
		users[i] = lat.Register(t, fmt.Sprintf("u%02d", i))
	}
	for _, ver := range interopVersions {
		t.Run("v"+string(ver), func(t *testing.T) {
			roomID := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_version": string(ver)})
			for _, u := range users {
				u.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{})
			}
			users[40].MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/leave", map[string]any{})
			statePath := "/_matrix/client/v3/rooms/" + esc(roomID) + "/state/"
			pl := alice.MustDo("GET", statePath+"m.room.power_levels/", nil).Body
			plUsers, _ := pl["users"].(map[string]any)
			if plUsers == nil {
				plUsers = map[string]any{}
			}
			plUsers[users[5].UserID] = 50
			plUsers[users[6].UserID] = 100
			pl["users"] = plUsers
			alice.MustDo("PUT", statePath+"m.room.power_levels/", pl)
			users[5].MustDo("PUT", statePath+"m.room.topic/", map[string]any{"topic": "set by u05"})
			users[6].MustDo("PUT", statePath+"m.room.guest_access/", map[string]any{"guest_access": "can_join"})
			users[6].MustDo("PUT", statePath+"org.example.custom/k", map[string]any{"n": 1})
			users[5].MustDo("PUT", statePath+"m.room.topic/", map[string]any{"topic": "set again by u05"})

			// The room's state on Lattice before the fake's joins.
			fullState := map[string]string{} // event ID -> "type|state_key"
			var stateEvents []struct {
				EventID  string `json:"event_id"`
				Type     string `json:"type"`
				StateKey string `json:"state_key"`
			}
			if err := json.Unmarshal(alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state", nil).Raw, &stateEvents); err != nil {
				t.Fatal(err)
			}
			for _, ev := range stateEvents {
				fullState[ev.EventID] = ev.Type + "|" + ev.StateKey
			}

			eve := "@eve" + string(ver) + ":" + string(fake.name)
			ans, joinEv, rv := sendJoinAs(t, fake, latName, roomID, eve, "?omit_members=true")
			if ans.Status != 200 {
				t.Fatalf("send_join with omit_members=true: %d %s", ans.Status, ans.Raw)
			}
			var resp fclient.RespSendJoin
			if err := json.Unmarshal(ans.Raw, &resp); err != nil {
				t.Fatalf("send_join answer: %v: %.500s", err, ans.Raw)
			}
			if !resp.MembersOmitted {
				t.Errorf("members_omitted is not true: %.300s", ans.Raw)
			}
			if got := fmt.Sprint(resp.ServersInRoom); got != "["+lat.Name+"]" {
				t.Errorf("servers_in_room = %s, want [%s]", got, lat.Name)
			}
			checkSendJoinAnswer(t, rv, &resp, verifier, joinEv)

			wantMembers := []string{alice.UserID, users[0].UserID, users[1].UserID, users[2].UserID, users[3].UserID, users[5].UserID, users[6].UserID}
			sort.Strings(wantMembers)
			var gotMembers []string
			nonMember := map[string]bool{}
			for _, raw := range resp.StateEvents {
				ev, err := rv.NewEventFromUntrustedJSON(raw)
				if err != nil {
					t.Fatal(err)
				}
				if want, ok := fullState[ev.EventID()]; !ok || want != ev.Type()+"|"+*ev.StateKey() {
					t.Errorf("state holds %s (%s|%s), not in the room's state", ev.EventID(), ev.Type(), *ev.StateKey())
				}
				if ev.Type() == spec.MRoomMember {
					gotMembers = append(gotMembers, *ev.StateKey())
				} else {
					nonMember[ev.EventID()] = true
				}
			}
			sort.Strings(gotMembers)
			if strings.Join(gotMembers, " ") != strings.Join(wantMembers, " ") {
				t.Errorf("state's memberships:\n got %v\nwant %v (the creator, the state setters, the heroes)", gotMembers, wantMembers)
			}
			for id, key := range fullState {
				if !strings.HasPrefix(key, spec.MRoomMember+"|") && !nonMember[id] {
					t.Errorf("state lacks the room's %s (%s)", key, id)
				}
			}
			unneeded := map[string]bool{users[4].UserID: true}
			for _, u := range users[7:] {
				unneeded[u.UserID] = true
			}
			for _, raw := range append(append([]spec.RawJSON(nil), resp.StateEvents...), resp.AuthEvents...) {
				ev, _ := rv.NewEventFromUntrustedJSON(raw)
				if ev != nil && ev.Type() == spec.MRoomMember && unneeded[*ev.StateKey()] {
					t.Errorf("the answer holds the membership %s of %s, which nothing needs", ev.EventID(), *ev.StateKey())
				}
			}
			t.Logf("with omit_members: %d state and %d auth chain events, %d bytes", len(resp.StateEvents), len(resp.AuthEvents), len(ans.Raw))
			if len(resp.StateEvents)+len(resp.AuthEvents) > 30 {
				t.Errorf("the reduced answer has %d state and %d auth chain events", len(resp.StateEvents), len(resp.AuthEvents))
			}

			// Without omit_members: the full state before the join (with eve's), as before.
			fullState[joinEv.EventID()] = spec.MRoomMember + "|" + eve
			ans, joinEv, rv = sendJoinAs(t, fake, latName, roomID, "@full"+string(ver)+":"+string(fake.name), "")
			if ans.Status != 200 {
				t.Fatalf("send_join without omit_members: %d %s", ans.Status, ans.Raw)
			}
			var full fclient.RespSendJoin
			if err := json.Unmarshal(ans.Raw, &full); err != nil {
				t.Fatal(err)
			}
			if full.MembersOmitted || strings.Contains(string(ans.Raw), `"servers_in_room"`) {
				t.Errorf("the full answer has members_omitted %v / servers_in_room: %.300s", full.MembersOmitted, ans.Raw)
			}
			t.Logf("without: %d state and %d auth chain events, %d bytes", len(full.StateEvents), len(full.AuthEvents), len(ans.Raw))
			checkSendJoinAnswer(t, rv, &full, verifier, joinEv)
			got := map[string]bool{}
			for _, raw := range full.StateEvents {
				ev, _ := rv.NewEventFromUntrustedJSON(raw)
				got[ev.EventID()] = true
				if _, ok := fullState[ev.EventID()]; !ok {
					t.Errorf("the full state holds %s (%s), not in the room's state", ev.EventID(), ev.Type())
				}
			}
			if len(got) != len(fullState) {
				t.Errorf("the full state has %d events, the room's state %d", len(got), len(fullState))
			}
		})
	}
}

// sendJoinAs makes userID of fake join roomID on dest: make_join, the join built and signed
// from the template, then send_join v2 with query (e.g. "?omit_members=true"). It returns
// the send_join response, the join event and the room version.
func sendJoinAs(t *testing.T, fake *fakeHomeserver, dest spec.ServerName, roomID, userID, query string) (fedResp, gomatrixserverlib.PDU, gomatrixserverlib.IRoomVersion) {
	t.Helper()
	q := url.Values{}
	for v := range gomatrixserverlib.StableRoomVersions() {
		q.Add("ver", string(v))
	}
	mj := fake.request(t, "GET", dest, "/_matrix/federation/v1/make_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(userID)+"?"+q.Encode(), nil)
	if mj.Status != 200 {
		t.Fatalf("make_join: %d %s", mj.Status, mj.Raw)
	}
	var tmpl struct {
		RoomVersion gomatrixserverlib.RoomVersion `json:"room_version"`
		Event       gomatrixserverlib.ProtoEvent  `json:"event"`
	}
	if err := json.Unmarshal(mj.Raw, &tmpl); err != nil {
		t.Fatal(err)
	}
	rv, err := gomatrixserverlib.GetRoomVersion(tmpl.RoomVersion)
	if err != nil {
		t.Fatal(err)
	}
	joinEv, err := rv.NewEventBuilderFromProtoEvent(&tmpl.Event).Build(time.Now(), fake.name, fake.keyID, fake.priv)
	if err != nil {
		t.Fatal(err)
	}
	sj := fake.request(t, "PUT", dest, "/_matrix/federation/v2/send_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(joinEv.EventID())+query, json.RawMessage(joinEv.JSON()))
	return sj, joinEv, rv
}

// checkSendJoinAnswer runs gomatrixserverlib's check of a send_join answer, as a joining
// server does, with no way to fetch what the answer lacks.
func checkSendJoinAnswer(t *testing.T, rv gomatrixserverlib.IRoomVersion, resp *fclient.RespSendJoin, verifier gomatrixserverlib.JSONVerifier, join gomatrixserverlib.PDU) {
	t.Helper()
	noFetch := func(_ gomatrixserverlib.RoomVersion, ids []string) ([]gomatrixserverlib.PDU, error) {
		t.Errorf("the answer lacks the auth events %v", ids)
		return nil, fmt.Errorf("not in the answer: %v", ids)
	}
	checked, err := gomatrixserverlib.CheckSendJoinResponse(context.Background(), rv.Version(), resp, verifier, join, noFetch, senderUserID)
	if err != nil {
		t.Fatalf("CheckSendJoinResponse: %v", err)
	}
	if n, m := len(checked.GetStateEvents()), len(resp.StateEvents); n != m {
		t.Errorf("CheckSendJoinResponse kept %d of the %d state events", n, m)
	}
}

// TestFederationSendJoinOmitMembersInvited: in an invite-only room, the join of an invited
// user of the fake server with omit_members=true is authorised by the invite, so the answer's
// state must hold the invite: gomatrixserverlib's check that the join is allowed by the
// returned state fails otherwise.
func TestFederationSendJoinOmitMembersInvited(t *testing.T) {
	ca := newTestCA(t)
	lat := startFederatedServer(t, ca)
	fake := startFakeHomeserver(t, ca)
	latName := spec.ServerName(lat.Name)
	verifier := &keyVerifier{keys: map[spec.ServerName]map[gomatrixserverlib.KeyID]ed25519.PublicKey{
		latName:   publishedKeys(t, fake, latName),
		fake.name: {fake.keyID: fake.priv.Public().(ed25519.PublicKey)},
	}}
	// The fake signs the invites of its users (PUT /_matrix/federation/v2/invite).
	fake.setExtra(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != "PUT" || !strings.HasPrefix(r.URL.Path, "/_matrix/federation/v2/invite/") {
			return false
		}
		var body struct {
			RoomVersion gomatrixserverlib.RoomVersion `json:"room_version"`
			Event       json.RawMessage               `json:"event"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		rv, err := gomatrixserverlib.GetRoomVersion(body.RoomVersion)
		if err != nil {
			w.WriteHeader(400)
			return true
		}
		ev, err := rv.NewEventFromUntrustedJSON(body.Event)
		if err != nil {
			w.WriteHeader(400)
			return true
		}
		signed := ev.Sign(string(fake.name), fake.keyID, fake.priv)
		_ = json.NewEncoder(w).Encode(map[string]any{"event": json.RawMessage(signed.JSON())})
		return true
	})

	alice := lat.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "Invited only"})
	for i := 0; i < 6; i++ {
		u := lat.Register(t, fmt.Sprintf("m%d", i))
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": u.UserID})
		u.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{})
	}
	eve := "@eve:" + string(fake.name)
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": eve})

	ans, joinEv, rv := sendJoinAs(t, fake, latName, roomID, eve, "?omit_members=true")
	if ans.Status != 200 {
		t.Fatalf("send_join with omit_members=true: %d %s", ans.Status, ans.Raw)
	}
	var resp fclient.RespSendJoin
	if err := json.Unmarshal(ans.Raw, &resp); err != nil {
		t.Fatal(err)
	}
	if !resp.MembersOmitted || fmt.Sprint(resp.ServersInRoom) != "["+lat.Name+"]" {
		t.Errorf("members_omitted %v, servers_in_room %v", resp.MembersOmitted, resp.ServersInRoom)
	}
	checkSendJoinAnswer(t, rv, &resp, verifier, joinEv)
	var members []string
	for _, raw := range resp.StateEvents {
		ev, _ := rv.NewEventFromUntrustedJSON(raw)
		if ev.Type() == spec.MRoomMember {
			members = append(members, *ev.StateKey())
		}
	}
	sort.Strings(members)
	if want := []string{alice.UserID, eve}; fmt.Sprint(members) != fmt.Sprint(want) {
		t.Errorf("state's memberships %v, want %v (the state setter's, eve's invite)", members, want)
	}

	// omit_members must be true or false.
	other := "@other:" + string(fake.name)
	alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/invite", map[string]any{"user_id": other})
	ans, _, _ = sendJoinAs(t, fake, latName, roomID, other, "?omit_members=1")
	if ans.Status != 400 || ans.Body["errcode"] != "M_INVALID_PARAM" {
		t.Errorf("send_join with omit_members=1: %d %s, want 400 M_INVALID_PARAM", ans.Status, ans.Raw)
	}
}

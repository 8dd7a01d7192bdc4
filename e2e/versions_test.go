package e2e

import (
	"fmt"
	"testing"
)

// TestVersionsAndLaterEndpoints checks what /versions advertises (every version from v1.1 to
// v1.19, no gaps, and the MSC4222 flag matrix-js-sdk looks for) and the endpoints of the later
// versions that clients start using once they see them: DELETE /profile/{userId}/{keyName}
// and the m.profile_fields capability (v1.16), /room_summary (v1.15), /hierarchy (v1.2) and
// /mutual_rooms (v1.19).
func TestVersionsAndLaterEndpoints(t *testing.T) {
	srv := StartServer(t)
	alice, bob, carol := srv.Register(t, "alice"), srv.Register(t, "bob"), srv.Register(t, "carol")

	// /versions, with and without an access token (v1.10 allows either).
	for _, token := range []string{"", alice.Token} {
		r := srv.Do(t, token, "GET", "/_matrix/client/versions", nil)
		if r.Status != 200 {
			t.Fatalf("versions: %d %s", r.Status, r.Raw)
		}
		got := map[string]bool{}
		for _, v := range r.Body["versions"].([]any) {
			got[v.(string)] = true
		}
		for i := 1; i <= 19; i++ {
			if !got[fmt.Sprintf("v1.%d", i)] {
				t.Errorf("versions lacks v1.%d: %s", i, r.Raw)
			}
		}
		if !got["r0.6.1"] || got["v1.20"] {
			t.Errorf("versions: %s", r.Raw)
		}
		if obj(r.Body, "unstable_features")["org.matrix.msc4222"] != true {
			t.Errorf("unstable_features lacks org.matrix.msc4222: %s", r.Raw)
		}
	}

	// Profile fields: the capability names the two stored fields; DELETE clears one.
	caps := obj(alice.MustDo("GET", "/_matrix/client/v3/capabilities", nil).Body, "capabilities")
	if pf := obj(caps, "m.profile_fields"); pf["enabled"] != true || fmt.Sprint(pf["allowed"]) != "[displayname avatar_url]" {
		t.Fatalf("m.profile_fields: %v", pf)
	}
	profile := "/_matrix/client/v3/profile/" + esc(alice.UserID)
	alice.MustDo("PUT", profile+"/displayname", map[string]any{"displayname": "Alice"})
	alice.MustDo("DELETE", profile+"/displayname", nil)
	if r := alice.Do("GET", profile+"/displayname", nil); r.Status != 404 {
		t.Fatalf("displayname after DELETE: %d %s", r.Status, r.Raw)
	}
	alice.MustDo("DELETE", profile+"/m.tz", nil)
	expectErr(t, alice.Do("DELETE", profile+"/Not-A-Key", nil), "DELETE of an invalid key", 400, "M_INVALID_PARAM")
	expectErr(t, bob.Do("DELETE", profile+"/avatar_url", nil), "DELETE of another user's field", 403, "M_FORBIDDEN")

	// A space with a public child, a private child alice is alone in, and a nested space.
	space := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Space", "creation_content": map[string]any{"type": "m.space"}})
	pub := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Public", "room_alias_name": "pub"})
	priv := alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "Private"})
	sub := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Sub", "creation_content": map[string]any{"type": "m.space"}})
	deep := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Deep"})
	putState(alice, space, "m.space.child", pub, map[string]any{"via": []string{"localhost"}, "order": "b"})
	putState(alice, space, "m.space.child", priv, map[string]any{"via": []string{"localhost"}})
	putState(alice, space, "m.space.child", sub, map[string]any{"via": []string{"localhost"}, "order": "a", "suggested": true})
	putState(alice, sub, "m.space.child", deep, map[string]any{"via": []string{"localhost"}})
	putState(alice, space, "m.space.child", "!gone:localhost", map[string]any{})

	// /room_summary: by alias, with room_version and membership; private rooms only to members.
	s := bob.MustDo("GET", "/_matrix/client/v1/room_summary/"+esc("#pub:localhost"), nil).Body
	if s["room_id"] != pub || s["name"] != "Public" || s["join_rule"] != "public" || s["num_joined_members"] != float64(1) || s["room_version"] == nil || s["membership"] != nil {
		t.Fatalf("room_summary for bob: %v", s)
	}
	if s := alice.MustDo("GET", "/_matrix/client/v1/room_summary/"+esc(pub), nil).Body; s["membership"] != "join" {
		t.Fatalf("room_summary for alice: %v", s)
	}
	expectErr(t, bob.Do("GET", "/_matrix/client/v1/room_summary/"+esc(priv), nil), "summary of a private room", 404, "M_NOT_FOUND")

	// /hierarchy: depth first, ordered children, the private room left out for bob.
	names := func(r Resp) []string {
		var out []string
		for _, room := range r.Body["rooms"].([]any) {
			out = append(out, room.(map[string]any)["name"].(string))
		}
		return out
	}
	h := bob.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(space)+"/hierarchy", nil)
	if got := fmt.Sprint(names(h)); got != "[Space Sub Deep Public]" {
		t.Fatalf("hierarchy for bob: %s (%s)", got, h.Raw)
	}
	root := h.Body["rooms"].([]any)[0].(map[string]any)
	if root["room_type"] != "m.space" || len(root["children_state"].([]any)) != 3 {
		t.Fatalf("hierarchy root: %v", root)
	}
	if got := fmt.Sprint(names(alice.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(space)+"/hierarchy", nil))); got != "[Space Sub Deep Public Private]" {
		t.Fatalf("hierarchy for alice: %s", got)
	}
	if got := fmt.Sprint(names(bob.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(space)+"/hierarchy?max_depth=1&suggested_only=true", nil))); got != "[Space Sub]" {
		t.Fatalf("hierarchy, depth 1, suggested only: %s", got)
	}
	page := bob.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(space)+"/hierarchy?limit=2", nil)
	next, _ := page.Body["next_batch"].(string)
	rest := bob.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(space)+"/hierarchy?limit=2&from="+next, nil)
	if got := fmt.Sprint(names(page), names(rest)); got != "[Space Sub] [Deep Public]" || rest.Body["next_batch"] != nil {
		t.Fatalf("hierarchy pages: %s (%s)", got, rest.Raw)
	}
	expectErr(t, carol.Do("GET", "/_matrix/client/v1/rooms/"+esc(priv)+"/hierarchy", nil), "hierarchy of a private room", 403, "M_FORBIDDEN")

	// /mutual_rooms.
	join(bob, pub)
	join(bob, sub)
	m := bob.MustDo("GET", "/_matrix/client/v1/mutual_rooms?user_id="+esc(alice.UserID), nil).Body
	if m["count"] != float64(2) || len(m["joined"].([]any)) != 2 || m["next_batch"] != nil {
		t.Fatalf("mutual_rooms: %v", m)
	}
	if m := carol.MustDo("GET", "/_matrix/client/v1/mutual_rooms?user_id="+esc(alice.UserID), nil).Body; m["count"] != float64(0) {
		t.Fatalf("mutual_rooms without any: %v", m)
	}
	expectErr(t, bob.Do("GET", "/_matrix/client/v1/mutual_rooms?user_id="+esc(bob.UserID), nil), "mutual_rooms with oneself", 400, "M_INVALID_PARAM")
	expectErr(t, bob.Do("GET", "/_matrix/client/v1/mutual_rooms", nil), "mutual_rooms without user_id", 400, "M_MISSING_PARAM")
}

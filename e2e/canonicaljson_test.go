package e2e

import (
	"strings"
	"testing"
)

// TestCanonicalJSONInput: event content that canonical JSON cannot carry (appendices.md,
// "Canonical JSON": integers in ±(2^53-1) only, no floats) and bodies that are not UTF-8 JSON
// are refused with 400 before anything is stored, on every endpoint that makes an event;
// none of them is a 500, and nothing of them reaches another member's /sync.
func TestCanonicalJSONInput(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, roomID)
	send := "/_matrix/client/v3/rooms/" + esc(roomID) + "/send/m.room.message/"
	state := "/_matrix/client/v3/rooms/" + esc(roomID) + "/state/m.room.topic/"

	deep := strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000)
	badNumbers := []string{`1.5`, `1e2`, `-0`, `0.0`, `9007199254740992`, `-9007199254740992`, `123456789012345678901234567890`}
	for i, n := range badNumbers {
		body := []byte(`{"msgtype":"m.text","body":"x","n":` + n + `}`)
		r, _ := rawDo(srv, alice.Token, "PUT", send+"num"+string(rune('a'+i)), body)
		expectErr(t, r, "send with number "+n, 400, "M_BAD_JSON")
		r, _ = rawDo(srv, alice.Token, "PUT", state, []byte(`{"topic":"t","n":[`+n+`]}`))
		expectErr(t, r, "state with number "+n, 400, "M_BAD_JSON")
		r, _ = rawDo(srv, alice.Token, "POST", "/_matrix/client/v3/createRoom",
			[]byte(`{"initial_state":[{"type":"m.room.topic","state_key":"","content":{"topic":"t","n":`+n+`}}]}`))
		expectErr(t, r, "createRoom initial_state with number "+n, 400, "M_BAD_JSON")
	}
	for _, n := range []string{`9007199254740992`, `1.5`} {
		r, _ := rawDo(srv, alice.Token, "PUT", "/_matrix/client/v3/rooms/"+esc(roomID)+"/state/m.room.power_levels/",
			[]byte(`{"users":{"`+alice.UserID+`":100},"users_default":`+n+`}`))
		expectErr(t, r, "power levels with "+n, 400, "M_BAD_JSON")
		r, _ = rawDo(srv, alice.Token, "POST", "/_matrix/client/v3/createRoom",
			[]byte(`{"power_level_content_override":{"ban":`+n+`}}`))
		expectErr(t, r, "createRoom power_level_content_override with "+n, 400, "M_BAD_JSON")
	}
	r, _ := rawDo(srv, alice.Token, "PUT", send+"utf8", []byte("{\"msgtype\":\"m.text\",\"body\":\"\xff\xfe\"}"))
	expectErr(t, r, "send with invalid UTF-8", 400, "M_NOT_JSON")
	r, _ = rawDo(srv, alice.Token, "PUT", state, []byte("{\"topic\":\"\xc3\x28\"}"))
	expectErr(t, r, "state with invalid UTF-8", 400, "M_NOT_JSON")
	r, _ = rawDo(srv, alice.Token, "PUT", send+"deep", []byte(deep))
	expectErr(t, r, "send nested 10,000 deep", 400, "M_BAD_JSON")
	r, _ = rawDo(srv, "", "POST", "/_matrix/client/v3/register", []byte("{\"username\":\"\xff\",\"password\":\"p\"}"))
	expectErr(t, r, "register with invalid UTF-8", 400, "M_NOT_JSON")

	// What is allowed still is: the largest safe integers, and escapes for any code point.
	r, _ = rawDo(srv, alice.Token, "PUT", send+"okmax", []byte(`{"msgtype":"m.text","body":"ok \u00e9 \ud83d\ude00","n":9007199254740991,"m":-9007199254740991}`))
	expectOK(t, r, "send with the largest safe integers")
	okID := str(r.Body, "event_id")

	// bob's /sync is valid UTF-8 JSON (Resp decoding would fail otherwise) and has only the
	// accepted message.
	s := newSyncer(bob, "")
	s.waitEvent(roomID, okID)
	for _, e := range s.tl[roomID] {
		if evType(e) == "m.room.message" && evID(e) != okID {
			t.Errorf("bob's /sync has a message that should have been refused: %v", e)
		}
	}
	expectOK(t, whoami(alice), "whoami after the bad bodies")
}

package e2e

import (
	"testing"
)

// The state event type of these tests: every member may send it (power level 0), so only the
// state key rules decide; Complement's MSC3757 tests use the same set-up.
const ownedType = "com.example.test"

// ownedSuffix is Complement's suffix, with separator and sigil characters.
const ownedSuffix = "_state_key_suffix:!@#$123"

// ownedRoom has creator make a public room of version ver where ownedType needs power level
// 0, and the others join it.
func ownedRoom(t *testing.T, creator *Client, ver string, others ...*Client) string {
	t.Helper()
	body := map[string]any{
		"preset":                       "public_chat",
		"power_level_content_override": map[string]any{"events": map[string]any{ownedType: 0}},
	}
	if ver != "" {
		body["room_version"] = ver
	}
	roomID := creator.CreateRoom(body)
	for _, c := range others {
		join(c, roomID)
	}
	return roomID
}

// TestMSC3757OwnedState follows Complement's TestMSC3757OwnedState and TestWithoutOwnedState
// (tests/msc3757) on both MSC3757 room versions and their base versions: in an MSC3757 room a
// state key that starts with a user ID (alone or followed by "_") may be written by that user
// and by users with a greater power level; a key that does not start with a valid user ID is
// a bad request. In rooms of version 10 and 11 only the user ID itself is owned, by that user
// alone, and malformed keys are merely forbidden.
func TestMSC3757OwnedState(t *testing.T) {
	s := StartServer(t)
	creator, user1, user2 := s.Register(t, "creator"), s.Register(t, "user1"), s.Register(t, "user2")

	// The versions are offered as unstable, and not the default.
	caps := obj(creator.MustDo("GET", "/_matrix/client/v3/capabilities", nil).Body, "capabilities", "m.room_versions")
	for _, v := range []string{"org.matrix.msc3757.10", "org.matrix.msc3757.11"} {
		if got := str(obj(caps, "available"), v); got != "unstable" {
			t.Errorf("capabilities list %s as %q, want unstable: %v", v, got, caps)
		}
		if str(caps, "default") == v {
			t.Errorf("%s is the default room version", v)
		}
	}

	for _, ver := range []string{"org.matrix.msc3757.10", "org.matrix.msc3757.11"} {
		t.Run(ver, func(t *testing.T) {
			roomID := ownedRoom(t, creator, ver, user1, user2)
			create := stateEvent(creator, roomID, "m.room.create", "")
			if got := str(create.Body, "room_version"); got != ver {
				t.Fatalf("m.room.create room_version %q, want %q", got, ver)
			}
			ok := func(c *Client, key, what string) {
				t.Helper()
				expectOK(t, putState(c, roomID, ownedType, key, map[string]any{"by": c.UserID}), what)
			}
			ok(user1, user1.UserID+ownedSuffix, "user sets their own suffixed key")
			ok(user1, user1.UserID+"_"+user1.DeviceID+"_m.call", "user sets their MatrixRTC membership key")
			ok(creator, user1.UserID, "room creator sets another user's ID as key")
			ok(creator, user1.UserID+ownedSuffix, "room creator sets another user's suffixed key")
			ok(creator, "@notinroom:elsewhere.example", "room creator sets a non-member's key")
			ok(creator, "@prefix_"+user1.UserID+ownedSuffix, "room creator sets a key with a misplaced user ID")
			ok(user2, "_"+user1.UserID+"_"+user1.DeviceID+"_m.call", "an underscore-prefixed key is nobody's")

			forbidden := func(c *Client, key, what string) {
				t.Helper()
				expectErr(t, putState(c, roomID, ownedType, key, map[string]any{"by": c.UserID}), what, 403, "M_FORBIDDEN")
			}
			forbidden(user1, user2.UserID, "user sets another user's ID as key")
			forbidden(user1, user2.UserID+ownedSuffix, "user sets another user's suffixed key")
			forbidden(user2, user1.UserID+"_"+user1.DeviceID+"_m.call", "user overwrites another's MatrixRTC membership")
			forbidden(user1, user1.UserID+ownedSuffix[1:], "user sets an unseparated suffix (another server's user)")
			forbidden(user1, "@prefix_"+user1.UserID+ownedSuffix, "user sets a key with a misplaced user ID")
			forbidden(user1, creator.UserID+ownedSuffix, "user overwrites the room creator's key")

			expectErr(t, putState(creator, roomID, ownedType, "@oops", map[string]any{}), "key that is not a user ID", 400, "M_BAD_JSON")
			expectErr(t, putState(creator, roomID, ownedType, creator.UserID+"@"+ownedSuffix[1:], map[string]any{}),
				"key with an invalid server name before the separator", 400, "M_BAD_JSON")

			// What the room keeps: user2's attempt on user1's MatrixRTC key did not land.
			r := stateEvent(user2, roomID, ownedType, user1.UserID+"_"+user1.DeviceID+"_m.call")
			if got := str(r.Body, "by"); got != user1.UserID {
				t.Errorf("user1's MatrixRTC key holds content by %q, want user1's", got)
			}
		})
	}

	// Without MSC3757 the old rule stands (Complement's TestWithoutOwnedState).
	for _, ver := range []string{"10", "11"} {
		t.Run("v"+ver, func(t *testing.T) {
			roomID := ownedRoom(t, creator, ver, user1)
			expectOK(t, putState(user1, roomID, ownedType, user1.UserID, map[string]any{}), "user sets their own user ID as key")
			expectOK(t, putState(user1, roomID, ownedType, "_"+user1.UserID+"_"+user1.DeviceID+"_m.call", map[string]any{}), "underscore-prefixed key")
			for _, tc := range []struct{ key, what string }{
				{creator.UserID + ownedSuffix, "room creator sets their own suffixed key"},
				{user1.UserID, "room creator sets another user's ID as key"},
				{user1.UserID + ownedSuffix, "room creator sets another user's suffixed key"},
				{"@notinroom:elsewhere.example", "room creator sets a non-member's key"},
				{"@oops", "room creator sets a malformed user ID as key"},
			} {
				expectErr(t, putState(creator, roomID, ownedType, tc.key, map[string]any{}), tc.what, 403, "M_FORBIDDEN")
			}
		})
	}

	expectErr(t, call(creator, "POST", "/_matrix/client/v3/createRoom", map[string]any{"room_version": "org.matrix.msc3757.9"}),
		"an MSC3757 version that does not exist", 400, "M_UNSUPPORTED_ROOM_VERSION")
}

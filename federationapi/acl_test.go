package federationapi

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lattice-chat/lattice/roomserver"
)

// TestACLOnEncodedRoomIDs: a server the room's ACL denies gets 403 on every endpoint naming
// the room, however the room ID in the path is escaped.
func TestACLOnEncodedRoomIDs(t *testing.T) {
	ts := newTestServer(t)
	rs := withRoomserver(t, ts)
	ctx := context.Background()
	const alice = "@alice:lattice.test"
	roomID, err := rs.CreateRoom(ctx, alice, "A", roomserver.CreateRoomRequest{Preset: roomserver.PresetPublicChat})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.SetState(ctx, roomserver.Sender{UserID: alice}, roomID, "m.room.server_acl", "",
		json.RawMessage(`{"allow":["*"],"deny":["remote.test"],"allow_ip_literals":true}`)); err != nil {
		t.Fatal(err)
	}
	remote := newIdentity(t, "remote.test", "ed25519:r1")
	ts.cacheKeys(t, remote.keys(t, ts.now.Add(time.Hour)))
	escapeAll := func(s string) string {
		var b strings.Builder
		for _, c := range []byte(s) {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
		}
		return b.String()
	}
	for _, room := range []string{url.PathEscape(roomID), escapeAll(roomID)} {
		for _, uri := range []string{
			"/_matrix/federation/v1/make_join/" + room + "/" + url.PathEscape("@bob:remote.test") + "?ver=12",
			"/_matrix/federation/v1/state_ids/" + room + "?event_id=x",
		} {
			code, body := ts.do(t, signedRequest(t, remote, ourName, "GET", uri, nil))
			if code != 403 || body["errcode"] != "M_FORBIDDEN" {
				t.Errorf("GET %s from a denied server: %d %v, want 403 M_FORBIDDEN", uri, code, body)
			}
		}
	}
}

package e2e

import (
	"fmt"
	"net/url"
	"testing"
)

// TestMessagesRelTypeFilters (MSC3874): rel_types / not_rel_types in a RoomEventFilter, under
// the stable and the org.matrix.msc3874 names, on /messages, on a /sync timeline and through a
// stored filter; a filter field of the wrong type is 400 M_BAD_JSON.
func TestMessagesRelTypeFilters(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	roomID := alice.CreateRoom(map[string]any{"preset": "private_chat"})
	since := str(alice.Sync("", "", 0).Body, "next_batch")
	root := alice.Send(roomID, "root")
	txn := 0
	send := func(typ string, content map[string]any) string {
		txn++
		return str(sendTxn(alice, roomID, typ, fmt.Sprintf("rel%d", txn), content).Body, "event_id")
	}
	inThread := send("m.room.message", map[string]any{"msgtype": "m.text", "body": "in thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	reaction := send("m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": root, "key": "+1"}})
	plain := alice.Send(roomID, "plain")

	// messages returns the IDs of the m.room.message / m.reaction events /messages gives for filter.
	messages := func(filter string) []string {
		t.Helper()
		q := url.Values{"dir": {"b"}, "limit": {"50"}, "filter": {filter}}
		r := call(alice, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/messages?"+q.Encode(), nil)
		if r.Status != 200 {
			t.Fatalf("/messages filter %s: %d %s", filter, r.Status, r.Raw)
		}
		var out []string
		for _, e := range reversed(list(r.Body, "chunk")) {
			if evType(e) == "m.room.message" || evType(e) == "m.reaction" {
				out = append(out, evID(e))
			}
		}
		return out
	}
	for _, c := range []struct {
		filter string
		want   []string
	}{
		{`{"org.matrix.msc3874.rel_types":["m.thread"]}`, []string{inThread}},
		{`{"rel_types":["m.thread","m.annotation"]}`, []string{inThread, reaction}},
		{`{"org.matrix.msc3874.not_rel_types":["m.thread"]}`, []string{root, reaction, plain}},
		{`{"not_rel_types":["m.thread","m.annotation"]}`, []string{root, plain}},
		{`{"org.matrix.msc3874.rel_types":["m.annotation"],"types":["m.room.message"]}`, nil},
		{`{"org.matrix.msc3874.rel_types":[]}`, nil},
		{`{}`, []string{root, inThread, reaction, plain}},
	} {
		checkSameIDs(t, "/messages "+c.filter, messages(c.filter), c.want)
	}

	// A /sync timeline filter, inline and stored.
	filterID := str(alice.MustDo("POST", "/_matrix/client/v3/user/"+esc(alice.UserID)+"/filter",
		map[string]any{"room": map[string]any{"timeline": map[string]any{"org.matrix.msc3874.not_rel_types": []string{"m.thread"}}}}).Body, "filter_id")
	for _, f := range []string{`{"room":{"timeline":{"org.matrix.msc3874.not_rel_types":["m.thread"],"limit":50}}}`, filterID} {
		tl := list(obj(alice.Sync(since, f, 0).Body, "rooms", "join", roomID, "timeline"), "events")
		var got []string
		for _, e := range tl {
			if evType(e) == "m.room.message" || evType(e) == "m.reaction" {
				got = append(got, evID(e))
			}
		}
		checkSameIDs(t, "/sync timeline not_rel_types "+f, got, []string{root, reaction, plain})
	}

	q := url.Values{"dir": {"b"}, "filter": {`{"org.matrix.msc3874.rel_types":"m.thread"}`}}
	expectErr(t, call(alice, "GET", "/_matrix/client/v3/rooms/"+esc(roomID)+"/messages?"+q.Encode(), nil), "rel_types not a list", 400, "M_BAD_JSON")

	if r := anon(t, srv, "GET", "/_matrix/client/versions", nil); obj(r.Body, "unstable_features")["org.matrix.msc3874"] != true {
		t.Errorf("/versions does not advertise org.matrix.msc3874: %s", r.Raw)
	}
}

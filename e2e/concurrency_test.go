package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/lattice-chat/lattice/storage"
)

// TestConcurrentSendersOneRoom has 32 clients send 50 messages each into one room at once
// while every one of them long-polls /sync. Every event must be stored once, the room DAG
// must be a gapless chain, and every client's /sync must deliver all 1,600 messages in the
// same order. The suite runs it on SQLite and again on PostgreSQL.
func TestConcurrentSendersOneRoom(t *testing.T) {
	const clients, perClient = 32, 50
	srv := StartServer(t)
	owner := srv.Register(t, "owner")
	roomID := owner.CreateRoom(map[string]any{"preset": "public_chat"})
	cs := make([]*Client, clients)
	for i := range cs {
		cs[i] = srv.Register(t, fmt.Sprintf("c%d", i))
		cs[i].MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{})
	}

	// Every client syncs until it has seen all messages.
	seen := make([][]string, clients)
	var syncWG sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for i, c := range cs {
		since := c.Sync("", `{"room":{"timeline":{"limit":1}}}`, 0).Body["next_batch"].(string)
		syncWG.Add(1)
		go func(i int, c *Client, since string) {
			defer syncWG.Done()
			got := map[string]bool{}
			filter := url.QueryEscape(`{"room":{"timeline":{"limit":2000}}}`)
			for len(seen[i]) < clients*perClient && ctx.Err() == nil {
				r := c.srv.Do(t, c.Token, "GET", "/_matrix/client/v3/sync?timeout=5000&filter="+filter+"&since="+since, nil)
				if r.Status != 200 {
					t.Errorf("client %d sync: %d %s", i, r.Status, r.Raw)
					return
				}
				since = r.Body["next_batch"].(string)
				for _, ev := range timelineEvents(r, roomID) {
					if ev["type"] != "m.room.message" {
						continue
					}
					id := ev["event_id"].(string)
					if got[id] {
						t.Errorf("client %d got %s twice", i, id)
					}
					got[id] = true
					seen[i] = append(seen[i], id)
				}
			}
		}(i, c, since)
	}

	var sendWG sync.WaitGroup
	acked := make(chan string, clients*perClient)
	for i, c := range cs {
		sendWG.Add(1)
		go func(i int, c *Client) {
			defer sendWG.Done()
			for j := 0; j < perClient; j++ {
				path := fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/m%d", esc(roomID), j)
				r := c.Do("PUT", path, map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("%d/%d", i, j)})
				if r.Status != 200 {
					t.Errorf("client %d send %d: %d %s", i, j, r.Status, r.Raw)
					return
				}
				acked <- r.Body["event_id"].(string)
			}
		}(i, c)
	}
	sendWG.Wait()
	close(acked)
	syncWG.Wait()
	if t.Failed() {
		return
	}
	ackedSet := map[string]bool{}
	for id := range acked {
		ackedSet[id] = true
	}
	if len(ackedSet) != clients*perClient {
		t.Fatalf("%d distinct event IDs acknowledged, want %d", len(ackedSet), clients*perClient)
	}
	for i := range seen {
		if len(seen[i]) != clients*perClient {
			t.Fatalf("client %d saw %d messages, want %d", i, len(seen[i]), clients*perClient)
		}
		for k, id := range seen[i] {
			if !ackedSet[id] {
				t.Fatalf("client %d saw unacknowledged event %s", i, id)
			}
			if id != seen[0][k] {
				t.Fatalf("client %d's order differs from client 0's at %d", i, k)
			}
		}
	}
	// /messages has every one exactly once, in the same order as /sync.
	hist := pageBack(t, owner, roomID)
	var msgs []string
	for _, ev := range hist {
		if ev["type"] == "m.room.message" {
			msgs = append(msgs, ev["event_id"].(string))
		}
	}
	if strings.Join(msgs, ",") != strings.Join(seen[0], ",") {
		t.Fatalf("/messages order (%d events) differs from /sync order (%d events)", len(msgs), len(seen[0]))
	}
	srv.Stop()
	checkLinearDAG(t, srv, roomID)
}

// timelineEvents returns the timeline events of roomID in a sync response.
func timelineEvents(r Resp, roomID string) []map[string]any {
	rooms, _ := r.Body["rooms"].(map[string]any)
	join, _ := rooms["join"].(map[string]any)
	room, _ := join[roomID].(map[string]any)
	tl, _ := room["timeline"].(map[string]any)
	evs, _ := tl["events"].([]any)
	out := make([]map[string]any, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.(map[string]any))
	}
	return out
}

// pageBack returns the whole room history, oldest first, through /messages.
func pageBack(t *testing.T, c *Client, roomID string) []map[string]any {
	var out []map[string]any
	from := ""
	for {
		path := "/_matrix/client/v3/rooms/" + esc(roomID) + "/messages?dir=b&limit=500"
		if from != "" {
			path += "&from=" + url.QueryEscape(from)
		}
		r := c.MustDo("GET", path, nil)
		chunk, _ := r.Body["chunk"].([]any)
		for _, e := range chunk {
			out = append([]map[string]any{e.(map[string]any)}, out...)
		}
		end, _ := r.Body["end"].(string)
		if end == "" || len(chunk) == 0 {
			return out
		}
		from = end
	}
}

// checkLinearDAG opens the stopped server's database and checks that the room's events form
// one chain: each event's only prev_event is the event before it, one depth lower, and the
// room has a single forward extremity.
func checkLinearDAG(t *testing.T, srv *Server, roomID string) {
	t.Helper()
	raw, err := os.ReadFile(srv.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^  url: "([^"]+)"`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("no database url in config")
	}
	dbURL := string(m[1])
	if path, ok := strings.CutPrefix(dbURL, "sqlite:"); ok && !strings.HasPrefix(path, "/") {
		dbURL = "sqlite:" + srv.DataDir + "/" + path
	}
	ctx := context.Background()
	db, err := storage.Open(ctx, dbURL, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	room, err := db.Room(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	evs, _, err := db.RoomEventsAfter(ctx, room.NID, 0, 1<<62, 100000)
	if err != nil {
		t.Fatal(err)
	}
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersion(room.Version))
	for i, ev := range evs {
		var f struct {
			PrevEvents []string `json:"prev_events"`
		}
		if err := json.Unmarshal(ev.JSON, &f); err != nil {
			t.Fatal(err)
		}
		if _, err := ver.NewEventFromTrustedJSONWithEventID(ev.EventID, ev.JSON, false); err != nil {
			t.Fatalf("event %s does not parse: %v", ev.EventID, err)
		}
		if i == 0 {
			if len(f.PrevEvents) != 0 {
				t.Fatalf("create event has prev_events %v", f.PrevEvents)
			}
			continue
		}
		if len(f.PrevEvents) != 1 || f.PrevEvents[0] != evs[i-1].EventID || ev.Depth != evs[i-1].Depth+1 {
			t.Fatalf("gap at event %d (%s): prev %v depth %d; previous event %s depth %d", i, ev.EventID, f.PrevEvents, ev.Depth, evs[i-1].EventID, evs[i-1].Depth)
		}
	}
	ext, err := db.ForwardExtremities(ctx, room.NID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) != 1 || ext[0] != evs[len(evs)-1].NID {
		t.Fatalf("forward extremities %v, want only the last event %d", ext, evs[len(evs)-1].NID)
	}
}

// TestConcurrentCreateRoom: one user creating 100 rooms at once with the same request, in room
// version 12 where the room ID is the create event's hash: every creation succeeds with its
// own room (two create events built in the same millisecond must still differ).
func TestConcurrentCreateRoom(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	const n = 100
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := alice.Do("POST", "/_matrix/client/v3/createRoom", map[string]any{"room_version": "12"})
			if r.Status != 200 {
				t.Errorf("createRoom %d: %d %s", i, r.Status, r.Raw)
				return
			}
			ids[i] = str(r.Body, "room_id")
		}(i)
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		if id != "" && seen[id] {
			t.Errorf("room %s was returned twice", id)
		}
		seen[id] = true
	}
}

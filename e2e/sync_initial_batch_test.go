package e2e

import (
	"fmt"
	"testing"
)

// An initial /sync reads the user's rooms in batches: the database statements it costs do not
// grow with the number of joined rooms (issue 16: a user in 1,000 rooms cost ten thousand),
// and what it returns per room (timeline, state, summary, unread counts) is still right.
func TestSyncInitialStatementsDoNotGrowWithRooms(t *testing.T) {
	srv := StartServer(t)
	metricsURL := withMetrics(t, srv)
	bob := srv.Register(t, "bob")
	alice := srv.Register(t, "alice")

	// statements returns the statements one initial sync of a new device of bob costs (a new
	// device: nothing cached for it), and the response.
	statements := func() (float64, Resp) {
		t.Helper()
		dev := srv.Login(t, "bob")
		before, _ := value(scrape(t, metricsURL), "lattice_db_query_duration_seconds")
		r := dev.Sync("", "", 0)
		after, _ := value(scrape(t, metricsURL), "lattice_db_query_duration_seconds")
		return after - before, r
	}
	var rooms []string
	addRooms := func(n int) {
		for i := 0; i < n; i++ {
			room := bob.CreateRoom(map[string]any{"preset": "public_chat", "name": fmt.Sprint("room ", len(rooms))})
			join(alice, room)
			alice.Send(room, "hello bob")
			rooms = append(rooms, room)
		}
	}
	check := func(r Resp) {
		t.Helper()
		joined := obj(r.Body, "rooms", "join")
		if len(joined) != len(rooms) {
			t.Fatalf("initial sync has %d joined rooms, want %d", len(joined), len(rooms))
		}
		for _, room := range rooms {
			jr := obj(joined, room)
			tl := list(obj(jr, "timeline"), "events")
			if len(tl) == 0 || evBody(tl[len(tl)-1]) != "hello bob" {
				t.Errorf("%s: timeline ends with %v", room, tl)
			}
			if n, _ := obj(jr, "unread_notifications")["notification_count"].(float64); n != 1 {
				t.Errorf("%s: notification_count %v, want 1", room, n)
			}
			if n, _ := obj(jr, "summary")["m.joined_member_count"].(float64); n != 2 {
				t.Errorf("%s: m.joined_member_count %v, want 2", room, n)
			}
			// The room's state reaches the client through the state section or the timeline.
			names := 0
			for _, ev := range append(list(obj(jr, "state"), "events"), tl...) {
				if evType(ev) == "m.room.name" {
					names++
				}
			}
			if names != 1 {
				t.Errorf("%s: %d m.room.name events in state and timeline, want 1", room, names)
			}
		}
	}

	addRooms(3)
	few, r := statements()
	check(r)
	addRooms(27)
	many, r := statements()
	check(r)
	// After a restart nothing is cached (state snapshots, unread counts, memberships).
	srv.Stop()
	srv.Start()
	cold, r := statements()
	check(r)
	t.Logf("statements of an initial sync: %v in 3 rooms, %v in 30, %v in 30 after a restart", few, many, cold)
	// One statement per room and kind was about 10 per room (270 more); a few more are
	// tolerated for background work (presence, last-seen writes) during the sync.
	if many-few > 10 {
		t.Errorf("an initial sync in 30 rooms costs %v statements, in 3 rooms %v: it grows with the rooms", many, few)
	}
	// Cold caches cost statements per kind of data and level of the snapshot chains, not per room.
	if cold > 60 {
		t.Errorf("an initial sync in 30 rooms after a restart costs %v statements", cold)
	}
}

package e2e

import (
	"fmt"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
)

// TestFederationInteropBackfillLongHistory: a room on the fake server has 300 messages
// before a Lattice user joins; the fake answers at most 40 events per GET /backfill. Paging
// /messages back 100 at a time, every page is full until the room's beginning (Lattice asks
// /backfill again and again until the page is full), and the pages together are the fake's
// whole history in order, without duplicates, ending at m.room.create.
func TestFederationInteropBackfillLongHistory(t *testing.T) {
	lat, h := startInterop(t)
	h.mu.Lock()
	h.backfillCap = 40
	h.mu.Unlock()
	host := "@host:" + string(h.fake.name)
	room := h.createRoom(t, gomatrixserverlib.RoomVersionV10, host, "Long history", "")
	for i := 0; i < 300; i++ {
		h.emit(t, room, host, "m.room.message", nil, message(fmt.Sprintf("history %d", i)))
	}
	erin := lat.Register(t, "erin")
	if r := joinRoom(erin, room.id, string(h.fake.name)); r.Status != 200 {
		t.Fatalf("erin joining %s via the fake: %d %s", room.id, r.Status, r.Raw)
	}
	h.mu.Lock()
	want := append([]string{}, room.order...)
	h.mu.Unlock()

	var got []event
	from := ""
	for page := 0; page < 10; page++ {
		p := getMessages(erin, room.id, "b", from, 100)
		got = append(got, p.chunk...)
		if p.end == "" || len(p.chunk) > 0 && evType(p.chunk[len(p.chunk)-1]) == "m.room.create" {
			break
		}
		if len(p.chunk) != 100 {
			t.Errorf("/messages page %d holds %d events, want 100: the room's history goes on (%d events read of %d); fake saw %d /backfill requests",
				page+1, len(p.chunk), len(got), len(want), len(h.fake.requestsLike("/backfill/")))
		}
		from = p.end
	}
	got = reversed(got)
	checkNoDuplicates(t, "erin's history", got)
	if len(got) == 0 || evType(got[0]) != "m.room.create" {
		t.Errorf("paging /messages back, erin never reaches m.room.create (%d events read of %d)", len(got), len(want))
	}
	checkSameIDs(t, "erin's history vs the fake's DAG", ids(got), want)
	h.checkNoFailures(t)
}

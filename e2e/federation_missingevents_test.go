package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
)

// TestFederationInteropServeGetMissingEvents: the fake server, in a Lattice room where alice
// wrote M1..M20 after its join, asks Lattice POST /get_missing_events as a server that
// missed them would. The answer is the messages between earliest_events and latest_events,
// nearest to latest_events first as the spec's breadth-first walk of prev_events finds them,
// cut at the limit and at min_depth; never earliest_events, latest_events, what precedes
// earliest_events (also across a fork: the fake's own message F is concurrent with alice's),
// or the room's state.
func TestFederationInteropServeGetMissingEvents(t *testing.T) {
	lat, h := startInterop(t)
	alice := lat.Register(t, "alice")
	room, as, eve := joinLatticeRoom(t, lat, h, alice, gomatrixserverlib.RoomVersionV10)
	h.mu.Lock()
	joinID := room.order[len(room.order)-1]
	h.mu.Unlock()
	// F, the fake's message right after its join, reaches Lattice only after M20: a fork.
	fork := h.emit(t, room, eve, "m.room.message", nil, message("F"))
	var m []string // m[i] is M(i+1)
	for i := 1; i <= 20; i++ {
		m = append(m, say(alice, room.id, fmt.Sprintf("M%d", i)))
	}
	h.sendToLattice(t, fork)
	as.waitEvent(room.id, fork.EventID())
	m = append(m, say(alice, room.id, "M21")) // after both M20 and F
	depthOf := map[string]int64{}
	ask := func(earliest, latest []string, limit int, minDepth int64) []string {
		t.Helper()
		r := h.fake.request(t, "POST", h.lat, "/_matrix/federation/v1/get_missing_events/"+url.PathEscape(room.id),
			map[string]any{"earliest_events": earliest, "latest_events": latest, "limit": limit, "min_depth": minDepth})
		if r.Status != 200 {
			t.Fatalf("get_missing_events: %d %s", r.Status, r.Raw)
		}
		var body struct {
			Events []json.RawMessage `json:"events"`
		}
		_ = json.Unmarshal(r.Raw, &body)
		var got []string
		for _, raw := range body.Events {
			ev, err := room.ver.NewEventFromUntrustedJSON(raw)
			if err != nil {
				t.Fatalf("get_missing_events answered a PDU that is not one: %v: %s", err, raw)
			}
			got = append(got, ev.EventID())
			depthOf[ev.EventID()] = ev.Depth()
		}
		return got
	}
	asSet := func(ids []string) map[string]bool {
		out := map[string]bool{}
		for _, id := range ids {
			out[id] = true
		}
		return out
	}
	check := func(what string, got, want []string) {
		t.Helper()
		g, w := asSet(got), asSet(want)
		for id := range g {
			if !w[id] {
				t.Errorf("%s: answered %s, which is not among the missing events wanted (got %d events, want %d)", what, id, len(got), len(want))
			}
		}
		for id := range w {
			if !g[id] {
				t.Errorf("%s: the missing event %s is not in the answer (got %d events, want %d)", what, id, len(got), len(want))
			}
		}
	}

	// Everything between the fake's join and M20.
	check("earliest=[eve's join], latest=[M20]", ask([]string{joinID}, []string{m[19]}, 50, 0), m[:19])
	// Between M5 and M20: M6..M19.
	check("earliest=[M5], latest=[M20]", ask([]string{m[4]}, []string{m[19]}, 50, 0), m[5:19])
	// The limit keeps the events nearest to latest_events: M10..M19.
	check("limit 10", ask([]string{joinID}, []string{m[19]}, 10, 0), m[9:19])
	// min_depth: nothing shallower than M15.
	if d, ok := depthOf[m[14]]; ok {
		check("min_depth of M15", ask([]string{joinID}, []string{m[19]}, 50, d), m[14:19])
	}
	// The fork: what a server that has F but none of alice's messages misses before M21 is
	// M1..M20; eve's join and the room's state before it precede F, which it has.
	check("earliest=[F], latest=[M21]", ask([]string{fork.EventID()}, []string{m[20]}, 50, 0), m[:20])
	// Nothing is missing between two adjacent events.
	check("earliest=[M19], latest=[M20]", ask([]string{m[18]}, []string{m[19]}, 50, 0), nil)
	h.checkNoFailures(t)
}

package syncapi

import (
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDiffConn: a write holds only the rooms that changed or were added, and names the rooms
// dropped; a connection that started again replaces its stored rooms whole.
func TestDiffConn(t *testing.T) {
	members := map[string]bool{"@a:x": true}
	prev := &connState{pos: 1, rooms: map[string]sentRoom{
		"!same:x":    {upTo: 5, membership: "join", members: members},
		"!changed:x": {upTo: 5, membership: "join"},
		"!gone:x":    {upTo: 5, membership: "join"},
		"!members:x": {upTo: 5, membership: "join", members: members},
	}}
	next := &connState{pos: 2, rooms: map[string]sentRoom{
		"!same:x":    {upTo: 5, membership: "join", members: members},
		"!changed:x": {upTo: 6, membership: "join"},
		"!new:x":     {upTo: 6, membership: "invite"},
		"!members:x": {upTo: 5, membership: "join", members: map[string]bool{"@a:x": true, "@b:x": true}},
	}}
	key := connKey{"@u:x", "DEV", ""}
	w := diffConn(key, prev, next, false)
	var written []string
	for roomID := range w.Rooms {
		written = append(written, roomID)
	}
	sort.Strings(written)
	if d := cmp.Diff([]string{"!changed:x", "!members:x", "!new:x"}, written); d != "" || w.Replace || w.Pos != 2 {
		t.Errorf("rooms written (-want +got):\n%s (replace %v, pos %d)", d, w.Replace, w.Pos)
	}
	if d := cmp.Diff([]string{"!gone:x"}, w.Dropped); d != "" {
		t.Errorf("rooms dropped (-want +got):\n%s", d)
	}
	if w := diffConn(key, prev, next, true); !w.Replace || len(w.Rooms) != 4 || len(w.Dropped) != 0 {
		t.Errorf("a restarted connection: replace %v, %d rooms, dropped %v", w.Replace, len(w.Rooms), w.Dropped)
	}
	if w := diffConn(key, nil, next, false); !w.Replace || len(w.Rooms) != 4 {
		t.Errorf("nothing written before: replace %v, %d rooms", w.Replace, len(w.Rooms))
	}
}

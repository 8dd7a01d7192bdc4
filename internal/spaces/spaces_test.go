package spaces

import (
	"fmt"
	"testing"
)

// TestOrder checks the spaces module's example of ordering children.
func TestOrder(t *testing.T) {
	in := []Child{
		{RoomID: "!b:example.org", TS: 1640341000000, Order: " "},
		{RoomID: "!a:example.org", TS: 1640141000000, Order: "aaaa"},
		{RoomID: "!c:example.org", TS: 1640841000000, Order: "first"},
		{RoomID: "!e:example.org", TS: 1640641000000},
		{RoomID: "!d:example.org", TS: 1640741000000},
		{RoomID: "!g:example.org", TS: 1640741000000, Order: "\x7f"},
		{RoomID: "!f:example.org", TS: 1640741000000},
	}
	var got []string
	for _, c := range Order(in) {
		got = append(got, c.RoomID)
	}
	want := "[!b:example.org !a:example.org !c:example.org !e:example.org !d:example.org !f:example.org !g:example.org]"
	if fmt.Sprint(got) != want {
		t.Fatalf("order: %v, want %s", got, want)
	}
}

// TestFromChunk reads a room of another server's /hierarchy answer: membership and
// children_state leave the fields, removed and malformed children are skipped.
func TestFromChunk(t *testing.T) {
	chunk := map[string]any{
		"room_id": "!space:example.org", "name": "Space", "join_rule": "restricted", "membership": "join",
		"allowed_room_ids": []any{"!up:example.org", 3},
		"children_state": []any{
			map[string]any{"type": "m.space.child", "state_key": "!a:example.org", "sender": "@x:example.org",
				"origin_server_ts": float64(5), "content": map[string]any{"via": []any{"example.org"}, "suggested": true, "order": "o"}},
			map[string]any{"type": "m.space.child", "state_key": "!removed:example.org", "content": map[string]any{}},
			map[string]any{"type": "m.space.parent", "state_key": "!p:example.org", "content": map[string]any{"via": []any{"example.org"}}},
			"not an event",
		},
	}
	sum, ok := FromChunk(chunk)
	if !ok {
		t.Fatal("not read")
	}
	if _, has := sum.Chunk["membership"]; has || sum.Chunk["children_state"] != nil || sum.Chunk["name"] != "Space" {
		t.Fatalf("fields: %v", sum.Chunk)
	}
	if len(sum.Children) != 1 {
		t.Fatalf("children: %+v", sum.Children)
	}
	c := sum.Children[0]
	if c.RoomID != "!a:example.org" || c.TS != 5 || !c.Suggested || c.Order != "o" || fmt.Sprint(c.Via) != "[example.org]" {
		t.Fatalf("child: %+v", c)
	}
	if !sum.Restricted() || fmt.Sprint(sum.AllowedRoomIDs()) != "[!up:example.org]" || sum.Joinable() {
		t.Fatalf("join rule: %v %v", sum.JoinRule(), sum.AllowedRoomIDs())
	}
	if _, ok := FromChunk(map[string]any{"name": "no ID"}); ok {
		t.Fatal("a chunk without room_id was read")
	}
}

package syncapi

import (
	"testing"

	"github.com/lattice-chat/lattice/storage"
)

func TestTokens(t *testing.T) {
	tok := Token{PDU: 42, AccountData: 7, Receipts: 3, Typing: 1700000000000, ToDevice: 9, DeviceLists: 2, Presence: 5}
	got, err := ParseToken(tok.String())
	if err != nil || got != tok {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// Tokens of older versions, with fewer streams, still parse.
	if got, err := ParseToken("s10_2"); err != nil || got.PDU != 10 || got.AccountData != 2 || got.Receipts != 0 {
		t.Fatalf("two-position token: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "s", "10_2", "s1", "s1_x", "s-1_2", "s1_2_3_4_5_6_7_8", "t1_2"} {
		if _, err := ParseToken(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if p, ok := parsePageToken("t5_17"); !ok || p.Split() || p.Late.Depth != 5 || p.Late.NID != 17 {
		t.Fatalf("topological token: %+v %v", p, ok)
	}
	split := storage.StreamSplit(42)
	if p, ok := parsePageToken(pageToken(split)); !ok || p != split {
		t.Fatalf("split token %q: %+v %v", pageToken(split), p, ok)
	}
	moved := split.Passed(&storage.Event{Depth: 7, NID: 40}, true)
	if p, ok := parsePageToken(pageToken(moved)); !ok || p != moved || !p.Split() {
		t.Fatalf("split token %q: %+v %v", pageToken(moved), p, ok)
	}
	for _, bad := range []string{"t1", "t1_2_3", "t1_x", "t1_2_3_4", "s1_2"} {
		if _, ok := parsePageToken(bad); ok {
			t.Errorf("page token %q parsed", bad)
		}
	}
}

func TestEventFilter(t *testing.T) {
	types := []string{"m.room.*", "org.example"}
	f := EventFilter{Types: &types, NotSenders: []string{"@spam:x"}}
	cases := []struct {
		typ, sender string
		want        bool
	}{
		{"m.room.message", "@a:x", true},
		{"org.example", "@a:x", true},
		{"m.reaction", "@a:x", false},
		{"m.room.message", "@spam:x", false},
	}
	for _, c := range cases {
		if got := f.allows(c.typ, c.sender); got != c.want {
			t.Errorf("allows(%s, %s) = %v", c.typ, c.sender, got)
		}
	}
	rooms := []string{"!a:x"}
	if !allowsRoom(&rooms, nil, "!a:x") || allowsRoom(&rooms, nil, "!b:x") || allowsRoom(nil, []string{"!a:x"}, "!a:x") {
		t.Error("room filter")
	}
}

// TestRelationPos checks the exclusive event NID bounds /relations pages with: its own tokens
// name the last event returned; /sync tokens are points just after their PDU position and
// /messages tokens points just before their event.
func TestRelationPos(t *testing.T) {
	for _, c := range []struct {
		tok          string
		upper, lower int64
	}{
		{"r5", 5, 5},
		{"s7_0_0_0_0_1_1", 8, 7},
		{"s7_1", 8, 7},
		{"t8_8", 8, 7},
		{"t-1_-1", -1, 0}, // the start of a room: nothing lies before it
		{"t1_1", 1, 0},
		{"t4611686018427387904_4611686018427387904", 1 << 62, 1<<62 - 1},
	} {
		up, err := relationPos(c.tok, true)
		if err != nil || up != c.upper {
			t.Errorf("relationPos(%q, upper) = %d, %v; want %d", c.tok, up, err, c.upper)
		}
		low, err := relationPos(c.tok, false)
		if err != nil || low != c.lower {
			t.Errorf("relationPos(%q, lower) = %d, %v; want %d", c.tok, low, err, c.lower)
		}
	}
	for _, tok := range []string{"", "x1", "r-1", "s", "t1"} {
		if _, err := relationPos(tok, true); err == nil {
			t.Errorf("relationPos(%q) accepted", tok)
		}
	}
}

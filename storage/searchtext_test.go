package storage

import "testing"

// TestSearchTextWithoutNUL: the searchable text of an event leaves out NUL characters, which
// PostgreSQL text cannot hold (a room named "\u0000" could not be created there).
func TestSearchTextWithoutNUL(t *testing.T) {
	for _, c := range []struct{ evType, content, key, text string }{
		{"m.room.name", `{"name":"a\u0000b"}`, "content.name", "ab"},
		{"m.room.topic", `{"topic":"\u0000"}`, "content.topic", ""},
		{"m.room.message", `{"body":"hi\u0000 there","msgtype":"m.text"}`, "content.body", "hi there"},
		{"m.room.member", `{"membership":"join"}`, "", ""},
	} {
		if key, text := SearchText(c.evType, []byte(c.content)); key != c.key || text != c.text {
			t.Errorf("SearchText(%s, %s) = %q, %q; want %q, %q", c.evType, c.content, key, text, c.key, c.text)
		}
	}
}

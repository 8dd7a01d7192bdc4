package e2e

import (
	"fmt"
	"testing"
)

// TestSearch covers full-text search: ranking and recency, room filter, pagination, context,
// redaction, and that users find only what they may see.
func TestSearch(t *testing.T) {
	srv := StartServer(t)
	alice, bob, eve := srv.Register(t, "alice"), srv.Register(t, "bob"), srv.Register(t, "eve")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Martian planning"})
	bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{})
	other := alice.CreateRoom(map[string]any{"preset": "private_chat"})
	alice.Send(other, "martians in the private room")
	for i := 0; i < 12; i++ {
		alice.Send(room, fmt.Sprintf("martians and men, number %d", i))
	}
	secret := bob.Send(room, "the martians are coming")
	bob.Send(room, "nothing to see here")
	redacted := alice.Send(room, "martians redacted soon")
	alice.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/redact/%s/r1", esc(room), esc(redacted)), map[string]any{})

	search := func(c *Client, body map[string]any, query string) map[string]any {
		r := c.MustDo("POST", "/_matrix/client/v3/search"+query, map[string]any{"search_categories": map[string]any{"room_events": body}})
		return r.Body["search_categories"].(map[string]any)["room_events"].(map[string]any)
	}
	// bob is not in the private room: 12 + 1 messages in the shared room, none redacted.
	res := search(bob, map[string]any{"search_term": "Martians", "order_by": "recent", "event_context": map[string]any{"before_limit": 1, "after_limit": 1}}, "")
	results := res["results"].([]any)
	if len(results) != 10 || res["next_batch"] == nil {
		t.Fatalf("first page: %d results, next_batch %v", len(results), res["next_batch"])
	}
	first := results[0].(map[string]any)
	if first["result"].(map[string]any)["event_id"] != secret {
		t.Fatalf("newest result is %v, want bob's message", first["result"])
	}
	if ctx := first["context"].(map[string]any); len(ctx["events_after"].([]any)) != 1 || len(ctx["events_before"].([]any)) != 1 {
		t.Fatalf("context %v", ctx)
	}
	next := search(bob, map[string]any{"search_term": "Martians", "order_by": "recent"}, "?next_batch="+res["next_batch"].(string))
	if n := len(next["results"].([]any)); n != 3 {
		t.Fatalf("second page: %d results, want 3", n)
	}
	seen := map[string]bool{}
	for _, r := range append(results, next["results"].([]any)...) {
		id := r.(map[string]any)["result"].(map[string]any)["event_id"].(string)
		if seen[id] || id == redacted {
			t.Fatalf("result %s repeated or redacted", id)
		}
		seen[id] = true
	}
	// alice sees the private room too; a filter limits it to one room; room names are searchable.
	all := search(alice, map[string]any{"search_term": "martians"}, "")
	if all["count"].(float64) < 14 {
		t.Fatalf("alice's count %v, want at least 14", all["count"])
	}
	only := search(alice, map[string]any{"search_term": "martians", "filter": map[string]any{"rooms": []string{other}}}, "")
	if n := len(only["results"].([]any)); n != 1 {
		t.Fatalf("filtered to the private room: %d results", n)
	}
	names := search(alice, map[string]any{"search_term": "planning", "keys": []string{"content.name"}}, "")
	if n := len(names["results"].([]any)); n != 1 {
		t.Fatalf("room name search: %d results", n)
	}
	// eve, in no room, finds nothing.
	if n := len(search(eve, map[string]any{"search_term": "martians"}, "")["results"].([]any)); n != 0 {
		t.Fatalf("eve found %d results", n)
	}
	if r := alice.Do("POST", "/_matrix/client/v3/search", map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x", "order_by": "sideways"}}}); r.Status != 400 {
		t.Fatalf("bad order_by: %d", r.Status)
	}
}

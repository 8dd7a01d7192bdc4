package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestSlidingSyncLeftRoomQuiet: a room the user was kicked from is sent once with its leave,
// and after that a long-poll with nothing new waits instead of sending it again.
func TestSlidingSyncLeftRoomQuiet(t *testing.T) {
	s := StartServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	roomID := bob.CreateRoom(map[string]any{"preset": "public_chat"})
	alice.MustDo("POST", "/_matrix/client/v3/join/"+esc(roomID), map[string]any{})
	r := slidingOK(t, alice, "", 0, allRooms(10, 5))
	bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(roomID)+"/kick", map[string]any{"user_id": alice.UserID})
	r = slidingOK(t, alice, str(r.Body, "pos"), 5000, allRooms(10, 5))
	if room := slidingRoom(r, roomID); room == nil || str(room, "membership") != "leave" {
		t.Fatalf("the kick did not come: %s", r.Raw)
	}
	start := time.Now()
	r = slidingOK(t, alice, str(r.Body, "pos"), 1000, allRooms(10, 5))
	if slidingRoom(r, roomID) != nil || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("after the kick was delivered, a long-poll returned after %v with %s", time.Since(start), r.Raw)
	}
}

// TestSlidingSyncCancelledPolls: long-polls the client cancels (as matrix-rust-sdk does to
// change its request) store no position, so the position the client holds stays valid.
func TestSlidingSyncCancelledPolls(t *testing.T) {
	s := StartServer(t)
	alice := s.Register(t, "alice")
	alice.CreateRoom(map[string]any{"preset": "private_chat"})
	r := slidingOK(t, alice, "", 0, allRooms(10, 5))
	pos := str(r.Body, "pos")
	body, _ := json.Marshal(allRooms(10, 5))
	for range 12 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+slidingPath+"?timeout=5000&pos="+pos, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		cancel()
	}
	time.Sleep(200 * time.Millisecond) // the server sees the cancellations
	if r := slidingSync(alice, pos, 0, allRooms(10, 5)); r.Status != 200 {
		t.Fatalf("the position held after 12 cancelled polls: %d %s", r.Status, r.Raw)
	}
}

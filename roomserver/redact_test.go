package roomserver

import (
	"context"
	"testing"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestRedactionThroughSend: a redaction sent as an ordinary event (PUT /send with
// content.redacts) redacts its target in every room version: before version 11 the target
// moves to the top-level redacts key.
func TestRedactionThroughSend(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := newTestServer(t, url)
		for _, ver := range []string{"6", "10", "11", "12"} {
			roomID, err := s.CreateRoom(ctx, "@alice:test", "D", CreateRoomRequest{RoomVersion: ver})
			if err != nil {
				t.Fatal(err)
			}
			target, err := s.SendMessage(ctx, Sender{UserID: "@alice:test"}, roomID, "m.room.message", mustJSON(map[string]string{"body": "oops"}), "")
			if err != nil {
				t.Fatal(err)
			}
			red, err := s.SendMessage(ctx, Sender{UserID: "@alice:test"}, roomID, "m.room.redaction", mustJSON(map[string]string{"redacts": target}), "")
			if err != nil {
				t.Fatalf("v%s: redaction through send: %v", ver, err)
			}
			ev, err := s.db.Event(ctx, target)
			if err != nil || ev.RedactedBy != red {
				t.Fatalf("v%s: target redacted by %q, want %q (%v)", ver, ev.RedactedBy, red, err)
			}
		}
	})
}

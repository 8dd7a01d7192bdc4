package roomserver

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

type wakes struct {
	mu   sync.Mutex
	seen map[spec.ServerName]int
}

func (w *wakes) Wake(d spec.ServerName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen[d]++
}

// TestEventsQueuedForRemoteServers: with federation on, a committed event is queued, in its
// own transaction, for every other server with a joined member, and only for those.
func TestEventsQueuedForRemoteServers(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := newTestServer(t, url)
		w := &wakes{seen: map[spec.ServerName]int{}}
		s.cfg.Outbound = w
		roomID, err := s.CreateRoom(ctx, "@alice:test", "D", CreateRoomRequest{Preset: PresetPublicChat})
		if err != nil {
			t.Fatal(err)
		}
		if len(w.seen) != 0 {
			t.Fatalf("a room with local members only woke %v", w.seen)
		}
		// Remote members arrive over federation, which is not wired yet: put them in the
		// room's view directly.
		r, err := s.lockRoom(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		r.members["@bob:remote.example"] = spec.Join
		r.members["@carol:gone.example"] = spec.Leave
		r.mu.Unlock()

		_, err = s.SendMessage(ctx, Sender{UserID: "@alice:test", DeviceID: "D"}, roomID, "m.room.message", mustJSON(map[string]string{"body": "hi"}), "t1")
		if err != nil {
			t.Fatal(err)
		}
		if w.seen["remote.example"] != 1 || len(w.seen) != 1 {
			t.Fatalf("wakes %v, want remote.example once", w.seen)
		}
		txn, err := s.db.NextFederationTxn(ctx, "remote.example", 50, 100, "txn1")
		if err != nil {
			t.Fatal(err)
		}
		if len(txn.PDUs) != 1 || !strings.Contains(string(txn.PDUs[0]), `"body":"hi"`) {
			t.Fatalf("queued transaction %+v", txn)
		}
		if _, err := s.db.NextFederationTxn(ctx, "gone.example", 50, 100, "txn2"); err == nil {
			t.Fatal("an event was queued for a server whose users left")
		}
	})
}

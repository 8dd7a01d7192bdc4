package e2e

import (
	"fmt"
	"testing"
)

// unreadCount returns unread_notifications.notification_count of roomID in r, -1 when the
// room or its counts are absent.
func unreadCount(r Resp, roomID string) int {
	u := obj(r.Body, "rooms", "join", roomID, "unread_notifications")
	n, ok := u["notification_count"].(float64)
	if !ok {
		return -1
	}
	return int(n)
}

// TestAdminPurgeUnreadCounts: a member with unread notifications sees the exact, smaller
// count in /sync once a history purge deleted some of the notified events, both in an initial
// sync and in the incremental sync that brings the next message, although /sync had counted
// (and cached) the larger number before.
func TestAdminPurgeUnreadCounts(t *testing.T) {
	srv := StartServer(t)
	admin := srv.RegisterAdmin(t, "root")
	alice, bob := srv.Register(t, "alice"), srv.Register(t, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, room)
	bobSync := newSyncer(bob, "")
	bobSync.once(0)
	var msgs []string
	for i := range 10 {
		msgs = append(msgs, alice.Send(room, fmt.Sprintf("unread %d", i)))
	}
	bobSync.waitEvent(room, msgs[9])
	if n := unreadCount(bobSync.last, room); n != 10 {
		t.Fatalf("before the purge, incremental /sync: notification_count %d, want 10", n)
	}
	if n := unreadCount(bob.Sync("", "", 0), room); n != 10 {
		t.Fatalf("before the purge, initial /sync: notification_count %d, want 10", n)
	}

	// Purge the first six messages: four unread notifications remain.
	purgeHistory(t, admin, esc(room)+"/"+esc(msgs[6]), map[string]any{"delete_local_events": true})
	if n := unreadCount(bob.Sync("", "", 0), room); n != 4 {
		t.Errorf("after the purge, initial /sync: notification_count %d, want 4", n)
	}
	next := alice.Send(room, "unread after the purge")
	bobSync.waitEvent(room, next)
	if n := unreadCount(bobSync.last, room); n != 5 {
		t.Errorf("after the purge, incremental /sync with a new message: notification_count %d, want 5", n)
	}

	// A read receipt still clears them.
	bob.MustDo("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/receipt/m.read/%s", esc(room), esc(next)), map[string]any{})
	if n := unreadCount(bob.Sync("", "", 0), room); n != 0 {
		t.Errorf("after a read receipt: notification_count %d, want 0", n)
	}
}

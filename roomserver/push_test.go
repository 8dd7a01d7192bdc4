package roomserver

import (
	"context"
	"fmt"
	"testing"

	"github.com/lattice-chat/lattice/storage/storagetest"
)

// TestPushRowsDoNotGrowWithMembers: a message into a room whose members are on the default
// push rules, and which names none of them, stores as many notification rows in a room of
// 200 members as in a room of 10 (the members share one result), and only a few.
func TestPushRowsDoNotGrowWithMembers(t *testing.T) {
	storagetest.ForEachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := newTestServer(t, url)
		perMessage := map[int]int64{}
		for _, n := range []int{10, 200} {
			roomID, err := s.CreateRoom(ctx, "@owner:test", "D", CreateRoomRequest{Preset: PresetPublicChat})
			if err != nil {
				t.Fatal(err)
			}
			member := func(i int) string { return fmt.Sprintf("@m%d-%d:test", n, i) }
			for i := 0; i < n; i++ {
				if _, err := s.Join(ctx, member(i), roomID, ""); err != nil {
					t.Fatal(err)
				}
			}
			send := func(i int) {
				t.Helper()
				sender := Sender{UserID: member(i % 3), DeviceID: "D"}
				if _, err := s.SendMessage(ctx, sender, roomID, "m.room.message", mustJSON(map[string]string{"msgtype": "m.text", "body": fmt.Sprint(i)}), fmt.Sprint(n, "-", i)); err != nil {
					t.Fatal(err)
				}
			}
			send(0) // the room's first message: its members' spans open
			before, err := s.db.NotificationRows(ctx)
			if err != nil {
				t.Fatal(err)
			}
			const messages = 6
			for i := 1; i <= messages; i++ {
				send(i)
			}
			after, err := s.db.NotificationRows(ctx)
			if err != nil {
				t.Fatal(err)
			}
			perMessage[n] = (after - before) / messages
		}
		if perMessage[200] != perMessage[10] || perMessage[10] > 2 {
			t.Errorf("notification rows per message: %d with 10 members, %d with 200; want the same, at most 2", perMessage[10], perMessage[200])
		}
	})
}

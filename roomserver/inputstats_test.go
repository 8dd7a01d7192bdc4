package roomserver

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestInputQueue: concurrent sends to one room report their waits for the room's lane, and
// the queue is empty again once they are done.
func TestInputQueue(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestServer(t, "sqlite:"+t.TempDir()+"/lattice.db")
	var waits atomic.Int64
	s.cfg.InputWaited = func(time.Duration) { waits.Add(1) }
	roomID, err := s.CreateRoom(ctx, "@alice:test", "D", CreateRoomRequest{Preset: PresetPublicChat})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, err := s.SendMessage(ctx, Sender{UserID: "@alice:test", DeviceID: "D"}, roomID, "m.room.message", mustJSON(map[string]int{"i": i}), ""); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Each message waits twice: for the room to be looked up under its lock, and in the queue.
	if n := waits.Load(); n < 80 {
		t.Errorf("%d waits reported, want at least 80", n)
	}
	if total, deepest := s.InputQueue(); total != 0 || deepest != 0 {
		t.Errorf("InputQueue() = %d, %d after every send returned; want 0, 0", total, deepest)
	}
}

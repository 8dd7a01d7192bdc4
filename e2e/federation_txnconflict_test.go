package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
)

// TestFederationInteropSendUnderLocalLoad: while alice sends messages as fast as three
// clients can into a room, the fake server pushes its own messages into the same room, one
// transaction after another. Every transaction is answered 200 with each PDU accepted (a
// write conflict inside Lattice is Lattice's to retry, not a 500 that makes the sender back
// off and resend), and alice's /sync ends up with every message of both sides.
func TestFederationInteropSendUnderLocalLoad(t *testing.T) {
	lat, h := startInterop(t)
	alice := lat.Register(t, "alice")
	room, as, eve := joinLatticeRoom(t, lat, h, alice, gomatrixserverlib.RoomVersionV10)

	var wg sync.WaitGroup
	var mu sync.Mutex
	var want []string
	stop := make(chan struct{})
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id, err := trySay(alice, room.id, fmt.Sprintf("local %d-%d", w, i))
				if err != nil {
					t.Errorf("alice's message: %v", err)
					return
				}
				mu.Lock()
				want = append(want, id)
				mu.Unlock()
			}
		}(w)
	}
	for i := 0; i < 20; i++ {
		var pdus []gomatrixserverlib.PDU
		for j := 0; j < 3; j++ {
			pdus = append(pdus, h.emit(t, room, eve, "m.room.message", nil, message(fmt.Sprintf("remote %d-%d", i, j))))
		}
		r := h.fake.sendPDUs(t, h.lat, pduRaws(pdus))
		if r.Status != 200 {
			t.Errorf("/send %d under local load: %d %s, want 200", i, r.Status, r.Raw)
			continue
		}
		for _, p := range pdus {
			if res, ok := pduResult(r, p.EventID()); !ok || str(res, "error") != "" {
				t.Errorf("/send %d under local load: %s not accepted: %s", i, p.EventID(), r.Raw)
			}
			want = append(want, p.EventID())
		}
	}
	close(stop)
	wg.Wait()
	if missing := syncUntilSeen(t, as, want, 30*time.Second); len(missing) > 0 {
		t.Errorf("alice's /sync lacks %d of the %d messages: %v", len(missing), len(want), missing)
	}
	checkNoDuplicates(t, "alice's /sync timeline", as.tl[room.id])
}

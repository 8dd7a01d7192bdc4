package syncapi

import (
	"context"
	"testing"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// TestSlidingReceiptsNewRoomOnly: a room sent for the first time in an incremental response
// gets all its receipts, read for that room alone rather than for all the user's rooms.
func TestSlidingReceiptsNewRoomOnly(t *testing.T) {
	ctx := context.Background()
	db, rooms := slidingTestDB(t, 3)
	var last int64
	for i, r := range rooms {
		for _, u := range []string{"@bob:x", "@carol:x", "@alice:x"} {
			if err := db.WithTx(ctx, func(tx *storage.Tx) error {
				var err error
				last, err = tx.SetReceipt(ctx, storage.Receipt{RoomNID: r, UserID: u, Type: "m.read", EventID: "$ev" + string(rune('1'+i)), EventNID: int64(i + 1), TS: 1})
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := &Server{db: db}
	newRoom := "!r1:x"
	sel := &roomSelection{listRooms: map[string][]string{"all": {newRoom}}, rooms: []*roomCandidate{
		{m: storage.Membership{RoomNID: rooms[1], RoomID: newRoom, Membership: "join"}},
	}}
	on := true
	cfg := slidingExtensionsConfig{Receipts: &extConfig{Enabled: &on}}
	since := Token{PDU: 3, Receipts: last}
	base := &connState{pos: 1, to: since, rooms: map[string]sentRoom{}}
	next := base.clone()
	next.rooms[newRoom] = sentRoom{}
	resp := &slidingResponse{Rooms: map[string]*slidingRoom{newRoom: {Initial: true}}}
	to := Token{PDU: 3, Receipts: last + 1}
	if err := s.slidingEphemeral(ctx, roomserver.Viewer{UserID: "@alice:x"}, cfg, sel, base, next, resp, since, to); err != nil {
		t.Fatal(err)
	}
	ev, _ := resp.Extensions.Receipts.Rooms[newRoom].(map[string]any)
	content, _ := ev["content"].(receiptContent)
	if got := len(content["$ev2"]["m.read"]); got != 3 {
		t.Errorf("the new room has %d receipts, want 3: %v", got, resp.Extensions.Receipts.Rooms)
	}
	if len(resp.Extensions.Receipts.Rooms) != 1 {
		t.Errorf("receipts of other rooms: %v", resp.Extensions.Receipts.Rooms)
	}
	if s.sliding.receiptRooms != 1 {
		t.Errorf("the receipts of %d rooms were read for one new room", s.sliding.receiptRooms)
	}
	if next.rooms[newRoom].receiptsTo != to.Receipts {
		t.Errorf("receiptsTo = %d, want %d", next.rooms[newRoom].receiptsTo, to.Receipts)
	}
}

package federationapi

import (
	"context"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
)

// TestParsePDUNotAnObject: a PDU that is valid JSON but not an object is an error, not a
// panic (send_join, send_leave and send_knock with a body of null, and an invite whose event
// is null, were 500s).
func TestParsePDUNotAnObject(t *testing.T) {
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV12)
	for _, raw := range []string{`null`, ` null `, `[]`, `"x"`, `1`, ``} {
		if pdu, err := parsePDU(ver, []byte(raw)); err == nil || pdu != nil {
			t.Errorf("parsePDU(%q) = %v, %v; want an error", raw, pdu, err)
		}
	}
}

// TestCheckPDUText: an event from another server that is not UTF-8, or nests without bound, is
// refused before anything else, wherever it comes from (a transaction, or a response to
// /event, /backfill, /state or send_join), since events are stored as received.
func TestCheckPDUText(t *testing.T) {
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV10)
	s := &Server{}
	for _, raw := range []string{
		"{\"type\":\"m.room.message\",\"content\":{\"body\":\"\xff\xfe\"}}",
		`{"type":"m.room.message","content":` + strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat(`}`, 200) + `}`,
	} {
		if _, err := s.checkPDU(context.Background(), ver, []byte(raw)); err == nil {
			t.Errorf("checkPDU accepted %.60q", raw)
		}
	}
}

package federationapi

import (
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

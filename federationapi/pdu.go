package federationapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// maxPDUBytes is the spec's limit on the size of a PDU.
const maxPDUBytes = 65536

// checkPDU parses a PDU of a room of version ver received from another server and runs the
// first of the spec's "Checks performed on receipt of a PDU": it must be a valid event of the
// room version (format, canonical JSON, size), the sending server's and the origin's
// signatures must be valid, and its content hash must match; an event whose hash does not
// match is returned redacted, as the spec says. The auth checks are the roomserver's.
func (s *Server) checkPDU(ctx context.Context, ver gomatrixserverlib.IRoomVersion, raw []byte) (gomatrixserverlib.PDU, error) {
	if len(raw) > maxPDUBytes {
		return nil, fmt.Errorf("PDU is larger than %d bytes", maxPDUBytes)
	}
	// Events fetched from other servers (/event, backfill, state, joins) come in responses,
	// not request bodies, so they are checked here too: an event is stored as received, and
	// one that is not UTF-8 would make every member's /sync invalid JSON.
	if err := httputil.CheckJSONText(raw); err != nil {
		return nil, fmt.Errorf("invalid PDU: %w", err)
	}
	pdu, err := parsePDU(ver, raw)
	if err != nil {
		return nil, fmt.Errorf("invalid PDU: %w", err)
	}
	// The type and state key are keys of the state tables, and PostgreSQL text cannot hold a
	// NUL: such an event could not be stored there. Refused on every backend alike.
	if strings.ContainsRune(pdu.Type(), 0) || pdu.StateKey() != nil && strings.ContainsRune(*pdu.StateKey(), 0) {
		return nil, errors.New("invalid PDU: a NUL character in its type or state key")
	}
	if err := gomatrixserverlib.VerifyEventSignatures(ctx, pdu, s.keyRing, userIDForSender); err != nil {
		return nil, fmt.Errorf("event %s: bad signature: %w", pdu.EventID(), err)
	}
	return pdu, nil
}

// parsePDU is ver.NewEventFromUntrustedJSON for JSON that may not be an object: the library
// dereferences what `null` unmarshals to (a nil event) and panics.
func parsePDU(ver gomatrixserverlib.IRoomVersion, raw []byte) (gomatrixserverlib.PDU, error) {
	if trimmed := bytes.TrimSpace(raw); len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("a PDU must be a JSON object")
	}
	return ver.NewEventFromUntrustedJSON(raw)
}

func userIDForSender(_ spec.RoomID, senderID spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(senderID), true)
}

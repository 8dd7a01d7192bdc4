package federationapi

import (
	"context"
	"encoding/json"

	"github.com/tidwall/gjson"
)

// txnPDU is a PDU of a transaction with what ordering needs: its event ID ("" when it cannot
// be computed) and the events it cites (prev_events and auth_events).
type txnPDU struct {
	raw     json.RawMessage
	eventID string
	cites   []string
}

// orderTxnPDUs returns the PDUs of a transaction so that each comes after the PDUs of the
// same transaction it cites as prev or auth events, and otherwise in the order received.
// The spec leaves the order of "pdus" to the sender; processed as received, a child before
// its parent would send this server asking the origin (/event_auth, /get_missing_events,
// /state_ids) for an event it holds already, and a server that pushes but does not answer
// requests could never be heard. A cycle (impossible among valid events: the IDs are
// hashes) falls back to the received order for the events in it.
func (s *Server) orderTxnPDUs(ctx context.Context, raws []json.RawMessage) []json.RawMessage {
	pdus := make([]txnPDU, len(raws))
	index := map[string]int{}
	for i, raw := range raws {
		pdus[i] = txnPDU{raw: raw, eventID: s.txnEventID(ctx, raw), cites: citedEvents(raw)}
		if pdus[i].eventID != "" {
			index[pdus[i].eventID] = i
		}
	}
	out := make([]json.RawMessage, 0, len(raws))
	const (
		unvisited = iota
		visiting
		done
	)
	mark := make([]int, len(pdus))
	var visit func(i int)
	visit = func(i int) {
		if mark[i] != unvisited {
			return // done, or a cycle: leave it where it is
		}
		mark[i] = visiting
		for _, id := range pdus[i].cites {
			if j, ok := index[id]; ok && j != i {
				visit(j)
			}
		}
		mark[i] = done
		out = append(out, pdus[i].raw)
	}
	for i := range pdus {
		visit(i)
	}
	return out
}

// txnEventID computes the event ID of a PDU of a room this server knows, "" otherwise.
func (s *Server) txnEventID(ctx context.Context, raw json.RawMessage) string {
	roomID := gjson.GetBytes(raw, "room_id").Str
	if roomID == "" {
		return ""
	}
	ver, err := s.rs.StoredRoomVersion(ctx, roomID)
	if err != nil {
		return ""
	}
	pdu, err := ver.NewEventFromUntrustedJSON(raw)
	if err != nil {
		return ""
	}
	return pdu.EventID()
}

// citedEvents returns the prev_events and auth_events of a PDU: event IDs from room version
// 3 on, [event ID, hashes] pairs before.
func citedEvents(raw json.RawMessage) []string {
	var out []string
	for _, field := range []string{"prev_events", "auth_events"} {
		gjson.GetBytes(raw, field).ForEach(func(_, v gjson.Result) bool {
			if v.IsArray() {
				v = v.Get("0")
			}
			if v.Type == gjson.String {
				out = append(out, v.Str)
			}
			return true
		})
	}
	return out
}

package roomserver

import (
	"context"
	"encoding/json"
)

// DelayedTxnPrefix starts the transaction ID of an event sent for a delayed event (MSC4140):
// "delayed." and its delay ID, recorded for no device (""), which no client's transaction
// can be. Sending a delayed event again after a crash, with the same transaction ID,
// returns the event of the first send instead of a second one, which makes the delayed
// event scheduler's sends exactly-once.
const DelayedTxnPrefix = "delayed."

// SendDelayed sends the event of a delayed event (MSC4140) as from would have with PUT
// /send or PUT /state: a message event when stateKey is nil, a state event otherwise. The
// power levels are those of now, the time of sending. A repeated delayID returns the event
// already sent for it. A message event with stickyMS is sent sticky (MSC4354).
func (s *Server) SendDelayed(ctx context.Context, from Sender, roomID, evType string, stateKey *string, content json.RawMessage, delayID string, stickyMS *int64) (string, error) {
	txnID := DelayedTxnPrefix + delayID
	from.DeviceID = ""
	if stateKey == nil {
		req := eventRequest{Sender: from.UserID, Type: evType, Content: content, TxnID: txnID, StickyMS: stickyMS}
		return s.sendMessage(ctx, roomID, req)
	}
	return s.setState(ctx, from, roomID, evType, *stateKey, content, txnID)
}

// txnDevice is the device a transaction ID is recorded for: none without one.
func txnDevice(from Sender, txnID string) string {
	if txnID == "" {
		return ""
	}
	return from.DeviceID
}

package roomserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"math/big"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// Sender identifies who sends an event: the user and, for transaction IDs, the device.
type Sender struct {
	UserID   string
	DeviceID string
}

// SendMessage sends a message event; a repeated txnID from the same device returns the
// event ID of the first send and stores nothing new.
func (s *Server) SendMessage(ctx context.Context, from Sender, roomID, evType string, content json.RawMessage, txnID string) (string, error) {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	defer r.mu.Unlock()
	ev, err := s.submit(ctx, r, eventRequest{Sender: from.UserID, Type: evType, Content: content, TxnDevice: from.DeviceID, TxnID: txnID})
	if err != nil {
		return "", err
	}
	return ev.EventID, nil
}

// SetState sends a state event.
func (s *Server) SetState(ctx context.Context, from Sender, roomID, evType, stateKey string, content json.RawMessage) (string, error) {
	if evType == spec.MRoomMember {
		// Membership changes go through the same path as the dedicated endpoints, so that the
		// checks they make apply here too; the auth rules decide what is allowed.
		var c struct {
			Membership string `json:"membership"`
		}
		if err := json.Unmarshal(content, &c); err != nil || c.Membership == "" {
			return "", spec.BadJSON("m.room.member content needs a membership")
		}
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	defer r.mu.Unlock()
	ev, err := s.submit(ctx, r, eventRequest{Sender: from.UserID, Type: evType, StateKey: &stateKey, Content: content})
	if err != nil {
		return "", err
	}
	return ev.EventID, nil
}

// Redact sends a redaction of eventID. The sender must have sent the event or hold the
// room's redact power level.
func (s *Server) Redact(ctx context.Context, from Sender, roomID, eventID, reason, txnID string) (string, error) {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	defer r.mu.Unlock()
	target, err := s.db.Event(ctx, eventID)
	if err != nil || target.RoomNID != r.nid {
		return "", spec.NotFound("event not found")
	}
	content := map[string]any{}
	if reason != "" {
		content["reason"] = reason
	}
	req := eventRequest{Sender: from.UserID, Type: spec.MRoomRedaction, TxnDevice: from.DeviceID, TxnID: txnID}
	if usesContentRedacts(r.version) {
		content["redacts"] = eventID
	} else {
		req.Redacts = eventID
	}
	req.Content, _ = json.Marshal(content)
	ev, err := s.submit(ctx, r, req)
	if err != nil {
		return "", err
	}
	return ev.EventID, nil
}

// usesContentRedacts reports whether the room version moved redacts into content (v11+).
func usesContentRedacts(ver gomatrixserverlib.IRoomVersion) bool {
	switch ver.Version() {
	case gomatrixserverlib.RoomVersionV1, gomatrixserverlib.RoomVersionV2, gomatrixserverlib.RoomVersionV3,
		gomatrixserverlib.RoomVersionV4, gomatrixserverlib.RoomVersionV5, gomatrixserverlib.RoomVersionV6,
		gomatrixserverlib.RoomVersionV7, gomatrixserverlib.RoomVersionV8, gomatrixserverlib.RoomVersionV9,
		gomatrixserverlib.RoomVersionV10:
		return false
	}
	return true
}

// CurrentState returns the room's current state events.
func (s *Server) CurrentState(ctx context.Context, roomID string) ([]*storage.Event, error) {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	nid := r.nid
	r.mu.Unlock()
	return s.db.CurrentStateEvents(ctx, nid, "")
}

// StateEventAt returns the event for key in the state of a snapshot, or ErrNotFound.
func (s *Server) StateEventAt(ctx context.Context, snapshotNID int64, key storage.StateKey) (*storage.Event, error) {
	state, err := s.StateAt(ctx, snapshotNID)
	if err != nil {
		return nil, err
	}
	knid, err := s.lookupStateKeyNID(ctx, key)
	if err != nil {
		return nil, err
	}
	evNID, ok := state[knid]
	if !ok || knid == 0 {
		return nil, storage.ErrNotFound
	}
	evs, err := s.db.EventsByNID(ctx, []int64{evNID})
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, storage.ErrNotFound
	}
	return evs[0], nil
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func randomString(n int) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(idAlphabet)))
	for i := range b {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err)
		}
		b[i] = idAlphabet[v.Int64()]
	}
	return string(b)
}

package clientapi

import (
	"encoding/json"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// decodeContent reads an event content body, which must be a JSON object.
func decodeContent(r *http.Request) (json.RawMessage, error) {
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := httputil.UnmarshalObject(body, &obj); err != nil {
		return nil, err
	}
	return body, nil
}

// handleSend handles PUT /rooms/{roomId}/send/{eventType}/{txnId}.
func (s *Server) handleSend(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	content, err := decodeContent(r)
	if err != nil {
		return nil, err
	}
	evType := httputil.PathVar(r, "eventType")
	if evType == "" {
		return nil, spec.InvalidParam("event type is required")
	}
	if evType == "m.room.redaction" {
		// A suspended user may still redact their own events (the "redacts" of v11 rooms).
		err = s.mayRedact(r, gjson.GetBytes(content, "redacts").Str)
	} else {
		err = notSuspended(r)
	}
	if err != nil {
		return nil, err
	}
	if err := s.allowSend(r.Context(), sender(r).UserID); err != nil {
		return nil, err
	}
	sticky, isSticky, err := stickyOf(r)
	if err != nil {
		return nil, err
	}
	if delay, ok, err := delayOf(r); err != nil {
		return nil, err
	} else if ok {
		return s.scheduleDelayed(r, roomID, evType, nil, content, delay)
	}
	if shadowBanned(r) {
		return map[string]string{"event_id": fakeEventID(r)}, nil
	}
	from, err := massagedSender(r)
	if err != nil {
		return nil, err
	}
	var eventID string
	if isSticky {
		eventID, err = s.rooms.SendStickyMessage(r.Context(), from, roomID, evType, content, httputil.PathVar(r, "txnId"), sticky)
	} else {
		eventID, err = s.rooms.SendMessage(r.Context(), from, roomID, evType, content, httputil.PathVar(r, "txnId"))
	}
	if err != nil {
		return nil, err
	}
	if s.presence != nil {
		// Sending is activity (presence's "Idle timeout"); a failure here does not undo the send.
		if err := s.presence.Active(r.Context(), sender(r).UserID); err != nil {
			s.log.Error("presence not updated", "user_id", sender(r).UserID, "err", err)
		}
	}
	return map[string]string{"event_id": eventID}, nil
}

// handleRedact handles PUT /rooms/{roomId}/redact/{eventId}/{txnId}.
func (s *Server) handleRedact(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	var body struct {
		Reason string `json:"reason"`
	}
	raw, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	if len(raw) > 0 {
		if err := httputil.UnmarshalObject(raw, &body); err != nil {
			return nil, err
		}
	}
	if err := s.mayRedact(r, httputil.PathVar(r, "eventId")); err != nil {
		return nil, err
	}
	if shadowBanned(r) {
		return map[string]string{"event_id": fakeEventID(r)}, nil
	}
	eventID, err := s.rooms.Redact(r.Context(), sender(r), roomID, httputil.PathVar(r, "eventId"), body.Reason, httputil.PathVar(r, "txnId"))
	if err != nil {
		return nil, err
	}
	return map[string]string{"event_id": eventID}, nil
}

// handleSetState handles PUT /rooms/{roomId}/state/{eventType}/{stateKey}.
func (s *Server) handleSetState(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	content, err := decodeContent(r)
	if err != nil {
		return nil, err
	}
	if err := notSuspended(r); err != nil {
		return nil, err
	}
	if delay, ok, err := delayOf(r); err != nil {
		return nil, err
	} else if ok {
		stateKey := httputil.PathVar(r, "stateKey")
		return s.scheduleDelayed(r, roomID, httputil.PathVar(r, "eventType"), &stateKey, content, delay)
	}
	if shadowBanned(r) {
		return map[string]string{"event_id": fakeEventID(r, string(content))}, nil
	}
	from, err := massagedSender(r)
	if err != nil {
		return nil, err
	}
	eventID, err := s.rooms.SetState(r.Context(), from, roomID, httputil.PathVar(r, "eventType"), httputil.PathVar(r, "stateKey"), content)
	if err != nil {
		return nil, err
	}
	return map[string]string{"event_id": eventID}, nil
}

// handleState handles GET /rooms/{roomId}/state.
func (s *Server) handleState(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	dev := httputil.Device(r.Context())
	evs, err := s.rooms.VisibleState(r.Context(), roomID, dev.UserID)
	if err != nil {
		return nil, err
	}
	return s.rooms.StateClientEvents(r.Context(), roomID, evs, roomserver.Viewer{UserID: dev.UserID, DeviceID: dev.DeviceID})
}

// handleStateEvent handles GET /rooms/{roomId}/state/{eventType}/{stateKey}; with
// ?format=event the whole event is returned instead of its content.
func (s *Server) handleStateEvent(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	dev := httputil.Device(r.Context())
	evs, err := s.rooms.VisibleState(r.Context(), roomID, dev.UserID)
	if err != nil {
		return nil, err
	}
	evType, stateKey := httputil.PathVar(r, "eventType"), httputil.PathVar(r, "stateKey")
	for _, ev := range evs {
		if ev.Type != evType || gjson.GetBytes(ev.JSON, "state_key").Str != stateKey {
			continue
		}
		ces, err := s.rooms.StateClientEvents(r.Context(), roomID, []*storage.Event{ev}, roomserver.Viewer{UserID: dev.UserID, DeviceID: dev.DeviceID})
		if err != nil {
			return nil, err
		}
		ce := ces[0]
		if r.URL.Query().Get("format") == "event" {
			return ce, nil
		}
		return ce.Content, nil
	}
	return nil, spec.NotFound("state event not found")
}

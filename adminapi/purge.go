package adminapi

import (
	"errors"
	"net/http"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/retention"
	"github.com/lattice-chat/lattice/storage"
)

// Purge history: Synapse's purge history API (docs/admin_api/purge_history_api.md).
func (s *Server) purgeRoutes() []route {
	return []route{
		{method: "POST", path: "/v1/purge_history/{roomId}", fn: s.handlePurgeHistory},
		{method: "POST", path: "/v1/purge_history/{roomId}/{eventId}", fn: s.handlePurgeHistory},
		{method: "GET", path: "/v1/purge_history_status/{purgeId}", fn: s.handlePurgeHistoryStatus},
	}
}

// handlePurgeHistory handles POST /v1/purge_history/{roomId}[/{eventId}]: it starts a purge
// of the room's history before an event (kept, with the events of its depth) or a time, and
// answers {purge_id} at once. State events, the room's latest events and, unless
// delete_local_events, the events of local users are kept (as outliers: out of every timeline).
func (s *Server) handlePurgeHistory(r *http.Request) (any, error) {
	ctx := r.Context()
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	room, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.Errorf(http.StatusNotFound, "M_NOT_FOUND", "room not found")
	} else if err != nil {
		return nil, err
	}
	var body struct {
		DeleteLocalEvents bool   `json:"delete_local_events"`
		PurgeUpToEventID  string `json:"purge_up_to_event_id"`
		PurgeUpToTS       *int64 `json:"purge_up_to_ts"`
	}
	if raw, err := httputil.ReadBody(r); err != nil {
		return nil, err
	} else if len(raw) > 0 {
		if err := httputil.UnmarshalObject(raw, &body); err != nil {
			return nil, err
		}
	}
	eventID := httputil.PathVar(r, "eventId")
	if eventID == "" {
		eventID = body.PurgeUpToEventID
	}
	var depth int64
	switch {
	case eventID != "":
		ev, err := s.db.Event(ctx, eventID)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, httputil.Errorf(http.StatusNotFound, "M_NOT_FOUND", "event not found")
		} else if err != nil {
			return nil, err
		}
		if ev.RoomNID != room.NID {
			return nil, httputil.Errorf(http.StatusBadRequest, "M_INVALID_PARAM", "event is for wrong room")
		}
		depth = ev.Depth
	case body.PurgeUpToTS != nil:
		var found bool
		if depth, found, err = s.db.PurgeDepthAt(ctx, room.NID, *body.PurgeUpToTS); err != nil {
			return nil, err
		} else if !found {
			return nil, httputil.Errorf(http.StatusBadRequest, "M_INVALID_PARAM", "there is no event to be purged")
		}
	default:
		return nil, httputil.Errorf(http.StatusBadRequest, "M_MISSING_PARAM", "must specify purge_up_to_event_id or purge_up_to_ts")
	}
	id, err := s.purger.Begin(ctx, room, depth, body.DeleteLocalEvents)
	if errors.Is(err, retention.ErrInProgress) {
		return nil, httputil.Errorf(http.StatusBadRequest, "M_UNKNOWN", "history purge already in progress for %s", roomID)
	} else if err != nil {
		return nil, err
	}
	point := []any{"event_id", eventID}
	if eventID == "" {
		point = []any{"purge_up_to_ts", *body.PurgeUpToTS}
	}
	s.audit(r, "purge_history", append([]any{"room_id", roomID, "purge_id", id, "delete_local_events", body.DeleteLocalEvents}, point...)...)
	return map[string]string{"purge_id": id}, nil
}

// handlePurgeHistoryStatus handles GET /v1/purge_history_status/{purgeId}: {status} (active,
// complete or failed) with error when it failed.
func (s *Server) handlePurgeHistoryStatus(r *http.Request) (any, error) {
	p, err := s.db.PurgeByID(r.Context(), httputil.PathVar(r, "purgeId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.Errorf(http.StatusNotFound, "M_NOT_FOUND", "purge not found")
	} else if err != nil {
		return nil, err
	}
	resp := map[string]string{"status": p.Status}
	if p.Status == storage.PurgeFailed {
		resp["error"] = p.Error
	}
	return resp, nil
}

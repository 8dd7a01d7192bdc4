package clientapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

type reportRequest struct {
	Reason string `json:"reason"`
	Score  *int64 `json:"score"`
}

// handleReportEvent handles POST /rooms/{roomId}/report/{eventId}. The spec answers 404 when
// the event does not exist or the reporter cannot see it (not being in the room).
func (s *Server) handleReportEvent(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	var req reportRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	dev := httputil.Device(r.Context())
	eventID := httputil.PathVar(r, "eventId")
	ev, err := s.db.Event(r.Context(), eventID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("event not found")
	} else if err != nil {
		return nil, err
	}
	if room, err := s.db.Room(r.Context(), roomID); err != nil || ev.RoomNID != room.NID {
		return nil, spec.NotFound("event not found")
	}
	if m, err := s.rooms.Membership(r.Context(), roomID, dev.UserID); err != nil || m != spec.Join {
		return nil, spec.NotFound("event not found")
	}
	if req.Score != nil && (*req.Score < -100 || *req.Score > 0) {
		return nil, spec.InvalidParam("score must be between -100 and 0")
	}
	return struct{}{}, s.storeReport(r, storage.Report{RoomID: roomID, EventID: eventID, Reason: req.Reason, Score: req.Score})
}

// handleReportRoom handles POST /rooms/{roomId}/report.
func (s *Server) handleReportRoom(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	var req reportRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if _, err := s.db.Room(r.Context(), roomID); err != nil {
		return nil, spec.NotFound("room not found")
	}
	return struct{}{}, s.storeReport(r, storage.Report{RoomID: roomID, Reason: req.Reason})
}

// handleReportUser handles POST /users/{userId}/report.
func (s *Server) handleReportUser(r *http.Request) (any, error) {
	userID := httputil.PathVar(r, "userId")
	var req reportRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if _, err := s.db.Account(r.Context(), userID); err != nil {
		return nil, spec.NotFound("user not found")
	}
	return struct{}{}, s.storeReport(r, storage.Report{UserID: userID, Reason: req.Reason})
}

func (s *Server) storeReport(r *http.Request, rep storage.Report) error {
	rep.Reporter = httputil.Device(r.Context()).UserID
	rep.TS = time.Now().UnixMilli()
	return s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		_, err := tx.InsertReport(r.Context(), rep)
		return err
	})
}

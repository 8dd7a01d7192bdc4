package clientapi

import (
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// handleMutualRooms handles GET /_matrix/client/v1/mutual_rooms (v1.19): the rooms both the
// requester and user_id are joined to, as this server knows them. The whole list comes in one
// response, so there is never a next_batch and any from token is invalid.
func (s *Server) handleMutualRooms(r *http.Request) (any, error) {
	self := httputil.Device(r.Context()).UserID
	q := r.URL.Query()
	other := q.Get("user_id")
	if other == "" {
		return nil, spec.MissingParam("user_id is required")
	}
	if _, err := spec.NewUserID(other, true); err != nil || other == self {
		return nil, spec.InvalidParam("user_id must be another user's valid user ID")
	}
	if q.Has("from") {
		return nil, spec.InvalidParam("invalid or expired from token")
	}
	mine, err := s.db.UserMemberships(r.Context(), self, spec.Join)
	if err != nil {
		return nil, err
	}
	theirs, err := s.db.UserMemberships(r.Context(), other, spec.Join)
	if err != nil {
		return nil, err
	}
	joined := make(map[string]bool, len(theirs))
	for _, m := range theirs {
		joined[m.RoomID] = true
	}
	rooms := []string{}
	for _, m := range mine {
		if joined[m.RoomID] {
			rooms = append(rooms, m.RoomID)
		}
	}
	return map[string]any{"joined": rooms, "count": len(rooms)}, nil
}

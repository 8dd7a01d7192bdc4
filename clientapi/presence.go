package clientapi

import (
	"errors"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/presence"
	"github.com/lattice-chat/lattice/storage"
)

// presenceRoutes lists the presence endpoints.
func (s *Server) presenceRoutes() []route {
	const get, put = http.MethodGet, http.MethodPut
	return []route{
		{get, "/presence/{userId}/status", true, false, s.handleGetPresence},
		{put, "/presence/{userId}/status", true, false, s.handleSetPresence},
	}
}

// handleSetPresence handles PUT /presence/{userId}/status: only for one's own presence.
func (s *Server) handleSetPresence(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	if httputil.PathVar(r, "userId") != dev.UserID {
		return nil, spec.Forbidden("you cannot set the presence of another user")
	}
	var body struct {
		Presence  *string `json:"presence"`
		StatusMsg *string `json:"status_msg"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Presence == nil {
		return nil, spec.MissingParam("presence is required")
	}
	if !presence.Valid(*body.Presence) {
		return nil, spec.InvalidParam("presence must be online, unavailable or offline")
	}
	var msg string
	if body.StatusMsg != nil {
		msg = *body.StatusMsg
	}
	if err := s.presence.Set(r.Context(), dev.UserID, *body.Presence, msg); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// handleGetPresence handles GET /presence/{userId}/status. Another user's presence is given
// only to users who share a joined room with them (M_FORBIDDEN otherwise, unknown users
// included); a user with no stored presence is offline.
func (s *Server) handleGetPresence(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	userID := httputil.PathVar(r, "userId")
	if userID != dev.UserID {
		shared, err := s.db.SharesRoom(r.Context(), dev.UserID, userID)
		if err != nil {
			return nil, err
		}
		if !shared {
			return nil, spec.Forbidden("you are not allowed to see their presence")
		}
	}
	p, err := s.db.Presence(r.Context(), userID)
	if errors.Is(err, storage.ErrNotFound) {
		p = &storage.Presence{UserID: userID, State: presence.Offline}
	} else if err != nil {
		return nil, err
	}
	return presence.Content(p, s.rooms.Now()), nil
}

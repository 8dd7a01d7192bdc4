package clientapi

import (
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// typingRoutes lists the typing notification endpoint.
func (s *Server) typingRoutes() []route {
	return []route{
		{http.MethodPut, "/rooms/{roomId}/typing/{userId}", true, false, s.handleTyping},
	}
}

// handleTyping handles PUT /rooms/{roomId}/typing/{userId}. Users set only their own typing,
// only in rooms they are joined to. The timeout is capped (internal/typing): a client that
// vanishes mid-sentence stops "typing" soon.
func (s *Server) handleTyping(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	if httputil.PathVar(r, "userId") != dev.UserID {
		return nil, spec.Forbidden("you can only set your own typing notifications")
	}
	var body struct {
		Typing  *bool  `json:"typing"`
		Timeout *int64 `json:"timeout"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Typing == nil {
		return nil, spec.MissingParam("typing is required")
	}
	var timeout time.Duration
	if body.Timeout != nil {
		if *body.Timeout < 0 {
			return nil, spec.InvalidParam("timeout must not be negative")
		}
		timeout = time.Duration(min(*body.Timeout, int64(time.Hour/time.Millisecond))) * time.Millisecond
	}
	if err := s.requireJoined(r.Context(), roomID, dev.UserID); err != nil {
		return nil, err
	}
	s.typing.Set(roomID, dev.UserID, *body.Typing, timeout)
	s.eduSink().Typing(r.Context(), roomID, dev.UserID, *body.Typing)
	return struct{}{}, nil
}

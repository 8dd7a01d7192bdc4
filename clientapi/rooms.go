package clientapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
)

// handleCreateRoom handles POST /createRoom.
func (s *Server) handleCreateRoom(r *http.Request) (any, error) {
	var req roomserver.CreateRoomRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := notSuspended(r); err != nil {
		return nil, err
	}
	if shadowBanned(r) {
		return map[string]string{"room_id": fakeID("!", httputil.NewAccessToken()) + ":" + s.cfg.ServerName}, nil
	}
	if req.RoomAliasName != "" {
		if err := s.checkAlias(r.Context(), "#"+req.RoomAliasName+":"+s.cfg.ServerName); err != nil {
			return nil, err
		}
	}
	dev := httputil.Device(r.Context())
	roomID, err := s.rooms.CreateRoom(r.Context(), dev.UserID, dev.DeviceID, req)
	if err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

type membershipRequest struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason"`
}

// decodeMembership decodes a membership body; bodies are optional for join and leave.
func decodeMembership(r *http.Request, needUser bool) (membershipRequest, error) {
	var req membershipRequest
	body, err := httputil.ReadBody(r)
	if err != nil {
		return req, err
	}
	if len(body) > 0 || needUser {
		if err := httputil.UnmarshalObject(body, &req); err != nil {
			return req, err
		}
	}
	if needUser {
		if req.UserID == "" {
			return req, spec.MissingParam("user_id is required")
		}
		if _, err := spec.NewUserID(req.UserID, true); err != nil {
			return req, spec.InvalidParam("invalid user_id")
		}
	}
	return req, nil
}

// handleJoin handles POST /join/{roomIdOrAlias} and POST /rooms/{roomId}/join.
func (s *Server) handleJoin(r *http.Request) (any, error) {
	target := httputil.PathVar(r, "roomIdOrAlias")
	if target == "" {
		target = httputil.PathVar(r, "roomId")
	}
	// The body (optional) is content for the member event: reason and any other field.
	var extra map[string]any
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	if len(body) > 0 {
		if err := httputil.UnmarshalObject(body, &extra); err != nil {
			return nil, err
		}
		if reason, ok := extra["reason"]; ok {
			if _, isString := reason.(string); !isString {
				return nil, spec.BadJSON("reason must be a string")
			}
		}
	}
	if err := notSuspended(r); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	via := append(q["via"], q["server_name"]...)
	userID := httputil.Device(r.Context()).UserID
	if strings.HasPrefix(target, "#") {
		s.askServiceForAlias(r.Context(), target)
	}
	roomID, err := s.rooms.JoinVia(r.Context(), userID, target, extra, via)
	if err != nil {
		return nil, err
	}
	s.joinedSettings(r.Context(), userID, roomID)
	return map[string]string{"room_id": roomID}, nil
}

// roomAction runs one of the membership operations that take a target user.
func (s *Server) roomAction(r *http.Request, needUser bool, op func(userID, roomID, target, reason string) error) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	req, err := decodeMembership(r, needUser)
	if err != nil {
		return nil, err
	}
	if err := op(httputil.Device(r.Context()).UserID, roomID, req.UserID, req.Reason); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// handleInvite handles POST /rooms/{roomId}/invite.
func (s *Server) handleInvite(r *http.Request) (any, error) {
	if err := notSuspended(r); err != nil {
		return nil, err
	}
	return s.roomAction(r, true, func(u, room, target, reason string) error {
		if shadowBanned(r) {
			return nil
		}
		return s.rooms.Invite(r.Context(), u, room, target, reason)
	})
}

// handleLeave handles POST /rooms/{roomId}/leave.
func (s *Server) handleLeave(r *http.Request) (any, error) {
	return s.roomAction(r, false, func(u, room, _, reason string) error {
		return s.rooms.Leave(r.Context(), u, room, reason)
	})
}

// handleKick handles POST /rooms/{roomId}/kick.
func (s *Server) handleKick(r *http.Request) (any, error) {
	if err := notSuspended(r); err != nil { // a suspended moderator does not moderate
		return nil, err
	}
	return s.roomAction(r, true, func(u, room, target, reason string) error {
		return s.rooms.Kick(r.Context(), u, room, target, reason)
	})
}

// handleBan handles POST /rooms/{roomId}/ban.
func (s *Server) handleBan(r *http.Request) (any, error) {
	if err := notSuspended(r); err != nil { // a suspended moderator does not moderate
		return nil, err
	}
	return s.roomAction(r, true, func(u, room, target, reason string) error {
		return s.rooms.Ban(r.Context(), u, room, target, reason)
	})
}

// handleUnban handles POST /rooms/{roomId}/unban.
func (s *Server) handleUnban(r *http.Request) (any, error) {
	if err := notSuspended(r); err != nil { // a suspended moderator does not moderate
		return nil, err
	}
	return s.roomAction(r, true, func(u, room, target, reason string) error {
		return s.rooms.Unban(r.Context(), u, room, target, reason)
	})
}

// handleForget handles POST /rooms/{roomId}/forget; a room not left yet is 400 M_UNKNOWN
// ("The user has not left the room").
func (s *Server) handleForget(r *http.Request) (any, error) {
	return s.roomAction(r, false, func(u, room, _, _ string) error {
		err := s.rooms.Forget(r.Context(), u, room)
		if errors.Is(err, roomserver.ErrNotLeft) {
			return httputil.Errorf(http.StatusBadRequest, string(spec.ErrorUnknown), "%s", err)
		}
		return err
	})
}

// handleJoinedRooms handles GET /joined_rooms.
func (s *Server) handleJoinedRooms(r *http.Request) (any, error) {
	ms, err := s.db.UserMemberships(r.Context(), httputil.Device(r.Context()).UserID, spec.Join)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.RoomID)
	}
	return map[string]any{"joined_rooms": ids}, nil
}

// handleKnock handles POST /knock/{roomIdOrAlias}.
func (s *Server) handleKnock(r *http.Request) (any, error) {
	req, err := decodeMembership(r, false)
	if err != nil {
		return nil, err
	}
	if err := notSuspended(r); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	roomID, err := s.rooms.Knock(r.Context(), httputil.Device(r.Context()).UserID, httputil.PathVar(r, "roomIdOrAlias"), req.Reason, append(q["via"], q["server_name"]...))
	if err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

// handleUpgrade handles POST /rooms/{roomId}/upgrade.
func (s *Server) handleUpgrade(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	if err := notSuspended(r); err != nil { // an upgrade creates a room and sends events
		return nil, err
	}
	var req struct {
		NewVersion         string   `json:"new_version"`
		AdditionalCreators []string `json:"additional_creators"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.NewVersion == "" {
		return nil, spec.MissingParam("new_version is required")
	}
	userID := httputil.Device(r.Context()).UserID
	newID, err := s.rooms.Upgrade(r.Context(), userID, roomID, req.NewVersion, req.AdditionalCreators)
	if err != nil {
		return nil, err
	}
	s.joinedSettings(r.Context(), userID, newID) // the upgrader joined the new room
	return map[string]string{"replacement_room": newID}, nil
}

// joinedSettings carries the user's settings for the room that roomID replaces over to
// roomID once they have joined it. The join stands whatever happens here, so a failure is
// logged rather than returned.
func (s *Server) joinedSettings(ctx context.Context, userID, roomID string) {
	if err := s.inheritPushRules(ctx, userID, roomID); err != nil {
		s.log.Error("copy push rules to the upgraded room", "room_id", roomID, "user_id", userID, "err", err)
	}
}

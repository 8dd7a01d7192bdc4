package federationapi

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/spaces"
)

// handleHierarchy handles GET /_matrix/federation/v1/hierarchy/{roomId}?suggested_only=
// (server-server space_hierarchy.yaml): the room with its children_state, the children the
// requesting server could peek or join with theirs, and the IDs of the children it could
// not. Children this server has no state of are left out ("rooms which the responding
// server cannot provide details on will be outright excluded"). There is no paging: the
// requesting server walks further and filters for its user.
func (s *Server) handleHierarchy(r *http.Request) (any, error) {
	ctx := r.Context()
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	origin := request(ctx).Origin()
	suggestedOnly := r.URL.Query().Get("suggested_only") == "true"
	root, err := spaces.Load(ctx, s.db, roomID)
	if errors.Is(err, spaces.ErrUnknown) {
		return nil, spec.NotFound("room not found")
	} else if err != nil {
		return nil, err
	}
	if ok, err := s.serverMayPreview(ctx, root, roomID, origin); err != nil {
		return nil, err
	} else if !ok {
		return nil, spec.NotFound("room not found")
	}
	resp := spaces.Hierarchy{Room: root.WithChildrenState(), Children: []map[string]any{}, InaccessibleChildren: []string{}}
	for _, c := range spaces.Order(root.Children) {
		if suggestedOnly && !c.Suggested {
			continue
		}
		sum, err := spaces.Load(ctx, s.db, c.RoomID)
		if errors.Is(err, spaces.ErrUnknown) {
			continue
		} else if err != nil {
			return nil, err
		}
		ok, err := s.serverMayPreview(ctx, sum, c.RoomID, origin)
		if err != nil {
			return nil, err
		}
		if ok && s.rs != nil {
			ok = s.rs.ServerAllowed(ctx, c.RoomID, origin) // the child's server ACL
		}
		if ok {
			resp.Children = append(resp.Children, sum.WithChildrenState())
		} else {
			resp.InaccessibleChildren = append(resp.InaccessibleChildren, c.RoomID)
		}
	}
	return resp, nil
}

// serverMayPreview reports whether origin could peek or join roomID: the room is
// world-readable or joinable by anyone (public, knock, knock_restricted), origin has a user
// joined to it, or the room is restricted and origin has a user joined to one of the allowed
// rooms. The requesting server then checks allowed_room_ids against its user.
func (s *Server) serverMayPreview(ctx context.Context, sum *spaces.Summary, roomID string, origin spec.ServerName) (bool, error) {
	if sum.WorldReadable() || sum.Joinable() {
		return true, nil
	}
	if in, err := s.serverInRoom(ctx, roomID, origin); err != nil || in {
		return in, err
	}
	if sum.JoinRule() != spec.Restricted {
		return false, nil
	}
	// An allowed room this server is not in proves nothing: the child is left to the
	// inaccessible ones (the requesting server can still ask the child's own servers).
	for _, id := range sum.AllowedRoomIDs() {
		if in, err := s.serverInRoom(ctx, id, origin); err != nil || in {
			return in, err
		}
	}
	return false, nil
}

// serverInRoom reports whether server has a user joined to roomID.
func (s *Server) serverInRoom(ctx context.Context, roomID string, server spec.ServerName) (bool, error) {
	servers, err := s.db.RemoteServersInRoom(ctx, roomID, string(s.cfg.ServerName))
	if err != nil {
		return false, err
	}
	return slices.Contains(servers, string(server)), nil
}

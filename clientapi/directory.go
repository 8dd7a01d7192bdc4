package clientapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

func (s *Server) pathAlias(r *http.Request) (string, error) {
	alias := httputil.PathVar(r, "roomAlias")
	if !strings.HasPrefix(alias, "#") || !strings.Contains(alias, ":") {
		return "", spec.InvalidParam("invalid room alias")
	}
	return alias, nil
}

// handleGetAlias handles GET /directory/room/{roomAlias}.
func (s *Server) handleGetAlias(r *http.Request) (any, error) {
	alias, err := s.pathAlias(r)
	if err != nil {
		return nil, err
	}
	if i := strings.IndexByte(alias, ':'); i >= 0 && alias[i+1:] != s.cfg.ServerName && s.remoteDirectory != nil {
		roomID, servers, err := s.remoteDirectory.QueryAlias(r.Context(), alias)
		if err != nil {
			return nil, err
		}
		return map[string]any{"room_id": roomID, "servers": servers}, nil
	}
	s.askServiceForAlias(r.Context(), alias)
	roomID, _, err := s.db.Alias(r.Context(), alias)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("room alias not found")
	} else if err != nil {
		return nil, err
	}
	return map[string]any{"room_id": roomID, "servers": []string{s.cfg.ServerName}}, nil
}

// handlePutAlias handles PUT /directory/room/{roomAlias}.
func (s *Server) handlePutAlias(r *http.Request) (any, error) {
	alias, err := s.pathAlias(r)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(alias, ":"+s.cfg.ServerName) {
		return nil, spec.InvalidParam("alias must be on this server")
	}
	var req struct {
		RoomID string `json:"room_id"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.RoomID == "" {
		return nil, spec.MissingParam("room_id is required")
	}
	if err := s.checkAlias(r.Context(), alias); err != nil {
		return nil, err
	}
	dev := httputil.Device(r.Context())
	if appServiceAlias(r.Context(), alias) {
		// A service has full control of its aliases namespace: no membership needed.
	} else if m, err := s.rooms.Membership(r.Context(), req.RoomID, dev.UserID); err != nil {
		return nil, err
	} else if m != spec.Join {
		return nil, spec.Forbidden("you must be in the room to give it an alias")
	}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.InsertAlias(r.Context(), alias, req.RoomID, dev.UserID) })
	if errors.Is(err, storage.ErrConflict) {
		return nil, &httputil.Error{Status: http.StatusConflict, Code: "M_UNKNOWN", Msg: "room alias already exists"}
	}
	return struct{}{}, err
}

// handleDeleteAlias handles DELETE /directory/room/{roomAlias}; the creator of the alias, a
// server admin or the application service whose namespace holds it may delete it.
func (s *Server) handleDeleteAlias(r *http.Request) (any, error) {
	alias, err := s.pathAlias(r)
	if err != nil {
		return nil, err
	}
	roomID, creator, err := s.db.Alias(r.Context(), alias)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("room alias not found")
	} else if err != nil {
		return nil, err
	}
	dev := httputil.Device(r.Context())
	if creator != dev.UserID && !appServiceAlias(r.Context(), alias) {
		acc, err := s.db.Account(r.Context(), dev.UserID)
		if err != nil || !acc.IsAdmin {
			return nil, spec.Forbidden("only the alias creator can delete it")
		}
	}
	if err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.DeleteAlias(r.Context(), alias) }); err != nil {
		return nil, err
	}
	// The alias is gone whatever happens to the room's canonical alias event.
	if err := s.rooms.AliasDeleted(r.Context(), dev.UserID, roomID, alias); err != nil {
		s.log.Error("update canonical alias after deleting an alias", "room_id", roomID, "user_id", dev.UserID, "err", err)
	}
	return struct{}{}, nil
}

// handleRoomAliases handles GET /rooms/{roomId}/aliases: for members of the room, and for
// server admins (as Synapse allows; admin tools such as synadm list a user's rooms' aliases).
func (s *Server) handleRoomAliases(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	userID := httputil.Device(r.Context()).UserID
	if m, err := s.rooms.Membership(r.Context(), roomID, userID); err != nil {
		return nil, err
	} else if m != spec.Join {
		acct, err := s.db.Account(r.Context(), userID)
		if err != nil {
			return nil, err
		}
		if !acct.IsAdmin {
			return nil, spec.Forbidden("you are not in the room")
		}
	}
	aliases, err := s.db.RoomAliases(r.Context(), roomID)
	if err != nil {
		return nil, err
	}
	if aliases == nil {
		aliases = []string{}
	}
	return map[string]any{"aliases": aliases}, nil
}

// handleGetVisibility handles GET /directory/list/room/{roomId}.
func (s *Server) handleGetVisibility(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	room, err := s.db.Room(r.Context(), roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("unknown room")
	} else if err != nil {
		return nil, err
	}
	return map[string]string{"visibility": room.Visibility}, nil
}

// handleSetVisibility handles PUT /directory/list/room/{roomId}.
func (s *Server) handleSetVisibility(r *http.Request) (any, error) {
	room, visibility, err := s.visibilityRequest(r)
	if err != nil {
		return nil, err
	}
	roomID := room.RoomID
	// The spec leaves who may publish to the server; like the reference server, a server
	// admin may, and so may a member with the power to send m.room.canonical_alias.
	userID := httputil.Device(r.Context()).UserID
	if acc, err := s.db.Account(r.Context(), userID); err != nil {
		return nil, err
	} else if !acc.IsAdmin {
		if ok, err := s.rooms.MaySendState(r.Context(), roomID, userID, "m.room.canonical_alias"); err != nil {
			return nil, err
		} else if !ok {
			return nil, spec.Forbidden("you need the power to send m.room.canonical_alias to publish or unpublish this room")
		}
	}
	return struct{}{}, s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.SetRoomVisibility(r.Context(), room.NID, visibility) })
}

// visibilityRequest reads the room and the "public" or "private" visibility of a request that
// publishes a room to a room directory.
func (s *Server) visibilityRequest(r *http.Request) (*storage.Room, string, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, "", err
	}
	var req struct {
		Visibility string `json:"visibility"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, "", err
	}
	if req.Visibility != "public" && req.Visibility != "private" {
		return nil, "", spec.InvalidParam("visibility must be public or private")
	}
	room, err := s.db.Room(r.Context(), roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, "", spec.NotFound("unknown room")
	}
	return room, req.Visibility, err
}

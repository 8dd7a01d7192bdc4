package clientapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/publicrooms"
)

type publicRoomsRequest struct {
	Limit  int                `json:"limit"`
	Since  string             `json:"since"`
	Server string             `json:"server"`
	Filter publicrooms.Filter `json:"filter"`
	// The application services' network directories (appservice.go).
	IncludeAllNetworks   bool   `json:"include_all_networks"`
	ThirdPartyInstanceID string `json:"third_party_instance_id"`
}

// handleGetPublicRooms handles GET /publicRooms.
func (s *Server) handleGetPublicRooms(r *http.Request) (any, error) {
	q := r.URL.Query()
	req := publicRoomsRequest{Since: q.Get("since"), Server: q.Get("server"),
		IncludeAllNetworks: q.Get("include_all_networks") == "true", ThirdPartyInstanceID: q.Get("third_party_instance_id")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return nil, spec.InvalidParam("limit must be an integer")
		}
		req.Limit = n
	}
	return s.publicRooms(r, req)
}

// handlePostPublicRooms handles POST /publicRooms, with a search filter.
func (s *Server) handlePostPublicRooms(r *http.Request) (any, error) {
	var req publicRoomsRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if server := r.URL.Query().Get("server"); server != "" {
		req.Server = server // the spec's place for it; the body field is an older habit
	}
	return s.publicRooms(r, req)
}

// RemoteDirectory is other servers' directories (federationapi implements it).
type RemoteDirectory interface {
	QueryAlias(ctx context.Context, alias string) (roomID string, servers []string, err error)
	PublicRooms(ctx context.Context, server string, req any) (json.RawMessage, error)
}

// SetRemoteDirectory makes the directory endpoints ask other servers about their aliases and
// public rooms.
func (s *Server) SetRemoteDirectory(d RemoteDirectory) { s.remoteDirectory = d }

// publicRooms lists the published rooms of this server, or of the server the request
// names, asked over federation.
func (s *Server) publicRooms(r *http.Request, req publicRoomsRequest) (any, error) {
	if req.Server != "" && req.Server != s.cfg.ServerName {
		if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(req.Server)); !ok {
			return nil, spec.InvalidParam("server is not a valid server name")
		}
		if s.remoteDirectory == nil {
			return nil, spec.NotFound("federation is off: this server cannot list another server's rooms")
		}
		body := map[string]any{"filter": req.Filter}
		if req.Limit > 0 {
			body["limit"] = req.Limit
		}
		if req.Since != "" {
			body["since"] = req.Since
		}
		return s.remoteDirectory.PublicRooms(r.Context(), req.Server, body)
	}
	list := publicrooms.Request{Limit: req.Limit, Since: req.Since, Filter: req.Filter}
	if err := s.networkDirectory(&list, req); err != nil {
		return nil, err
	}
	return publicrooms.List(r.Context(), s.db, list)
}

// handleUserDirectory handles POST /user_directory/search: local users who share a room with
// the searcher or are in a public room.
func (s *Server) handleUserDirectory(r *http.Request) (any, error) {
	var req struct {
		SearchTerm string `json:"search_term"`
		Limit      int    `json:"limit"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, 100)
	users, err := s.db.SearchUsers(r.Context(), httputil.Device(r.Context()).UserID, req.SearchTerm, s.cfg.UserDirectory.SearchAllUsers, limit+1)
	if err != nil {
		return nil, err
	}
	results := []map[string]string{}
	for i, u := range users {
		if i == limit {
			break
		}
		res := map[string]string{"user_id": u.UserID}
		if u.DisplayName != "" {
			res["display_name"] = u.DisplayName
		}
		if u.AvatarURL != "" {
			res["avatar_url"] = u.AvatarURL
		}
		results = append(results, res)
	}
	return map[string]any{"results": results, "limited": len(users) > limit}, nil
}

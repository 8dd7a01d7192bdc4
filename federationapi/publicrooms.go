package federationapi

import (
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/publicrooms"
)

// handleGetPublicRooms handles GET /_matrix/federation/v1/publicRooms. This server has one
// network, so include_all_networks changes nothing and a third_party_instance_id matches no
// room.
func (s *Server) handleGetPublicRooms(r *http.Request) (any, error) {
	q := r.URL.Query()
	req := publicrooms.Request{Since: q.Get("since")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return nil, spec.InvalidParam("limit must be an integer")
		}
		req.Limit = n
	}
	if q.Get("third_party_instance_id") != "" {
		return emptyPublicRooms(), nil
	}
	return publicrooms.List(r.Context(), s.db, req)
}

// handlePostPublicRooms handles POST /_matrix/federation/v1/publicRooms, with a filter.
func (s *Server) handlePostPublicRooms(r *http.Request) (any, error) {
	var body struct {
		Limit                int                `json:"limit"`
		Since                string             `json:"since"`
		Filter               publicrooms.Filter `json:"filter"`
		IncludeAllNetworks   bool               `json:"include_all_networks"`
		ThirdPartyInstanceID string             `json:"third_party_instance_id"`
	}
	if err := httputil.UnmarshalObject(request(r.Context()).Content(), &body); err != nil {
		return nil, err
	}
	if body.ThirdPartyInstanceID != "" {
		return emptyPublicRooms(), nil
	}
	return publicrooms.List(r.Context(), s.db, publicrooms.Request{Limit: body.Limit, Since: body.Since, Filter: body.Filter})
}

func emptyPublicRooms() map[string]any {
	return map[string]any{"chunk": []any{}, "total_room_count_estimate": 0}
}

package federationapi

import (
	"errors"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// handleQueryProfile handles GET /_matrix/federation/v1/query/profile?user_id=&field=: the
// display name and avatar of a local user, or only the requested field.
func (s *Server) handleQueryProfile(r *http.Request) (any, error) {
	q := r.URL.Query()
	userID, field := q.Get("user_id"), q.Get("field")
	if userID == "" {
		return nil, spec.MissingParam("user_id is required")
	}
	if !s.isLocalUser(userID) {
		return nil, spec.InvalidParam("user_id is not a user of this server")
	}
	p, err := s.db.Profile(r.Context(), userID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("user does not exist")
	} else if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if p.DisplayName != "" {
		out["displayname"] = p.DisplayName
	}
	if p.AvatarURL != "" {
		out["avatar_url"] = p.AvatarURL
	}
	if field == "" {
		return out, nil
	}
	v, ok := out[field]
	if !ok {
		return nil, spec.NotFound("profile field not set")
	}
	return map[string]string{field: v}, nil
}

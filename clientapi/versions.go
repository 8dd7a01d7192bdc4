package clientapi

import (
	"net/http"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// handleVersions handles GET /_matrix/client/versions. Only versions whose required
// endpoints this server implements are listed.
func (s *Server) handleVersions(r *http.Request) (any, error) {
	return map[string]any{
		"versions":          []string{"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6"},
		"unstable_features": map[string]bool{},
	}, nil
}

// handleCapabilities handles GET /_matrix/client/v3/capabilities.
func (s *Server) handleCapabilities(r *http.Request) (any, error) {
	versions := map[string]string{}
	for v := range gomatrixserverlib.StableRoomVersions() {
		versions[string(v)] = "stable"
	}
	return map[string]any{"capabilities": map[string]any{
		"m.room_versions":   map[string]any{"default": s.cfg.Rooms.DefaultVersion, "available": versions},
		"m.change_password": map[string]bool{"enabled": true},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": false},
		"m.get_login_token": map[string]bool{"enabled": false},
		"m.profile_fields":  map[string]any{"enabled": true},
	}}, nil
}

// handleWellKnown handles GET /.well-known/matrix/client: client_api.public_base_url, or 404
// when it is not configured (clients then keep the URL they used).
func (s *Server) handleWellKnown(r *http.Request) (any, error) {
	base := s.cfg.ClientAPI.PublicBaseURL
	if base == "" {
		return nil, spec.NotFound("client_api.public_base_url is not configured")
	}
	return map[string]any{"m.homeserver": map[string]string{"base_url": base}}, nil
}

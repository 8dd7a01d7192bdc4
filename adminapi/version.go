package adminapi

import (
	"net/http"

	"github.com/lattice-chat/lattice/internal/version"
)

func (s *Server) serverRoutes() []route {
	return []route{
		{http.MethodGet, "/v1/server_version", s.handleServerVersion, true},
	}
}

// handleServerVersion handles GET /v1/server_version.
func (s *Server) handleServerVersion(r *http.Request) (any, error) {
	return map[string]any{"server_version": version.String()}, nil
}

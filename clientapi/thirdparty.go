package clientapi

import "net/http"

// handleThreePIDs handles GET /account/3pid. This server binds no third-party identifiers
// (no e-mail or phone verification), so the list is always empty; clients show that.
func (s *Server) handleThreePIDs(r *http.Request) (any, error) {
	return map[string]any{"threepids": []any{}}, nil
}

// handleThirdPartyProtocols handles GET /thirdparty/protocols: no application service
// bridges are registered, so there are no protocols.
func (s *Server) handleThirdPartyProtocols(r *http.Request) (any, error) {
	return map[string]any{}, nil
}

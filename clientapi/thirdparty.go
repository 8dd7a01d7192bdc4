package clientapi

import "net/http"

// handleThreePIDs handles GET /account/3pid. This server binds no third-party identifiers
// (no e-mail or phone verification), so the list is always empty; clients show that.
func (s *Server) handleThreePIDs(r *http.Request) (any, error) {
	return map[string]any{"threepids": []any{}}, nil
}

// handleThirdPartyProtocols handles GET /thirdparty/protocols: the protocols of the
// registered application services (bridges), as they describe them.
func (s *Server) handleThirdPartyProtocols(r *http.Request) (any, error) {
	if s.appservices == nil {
		return map[string]any{}, nil
	}
	return s.appservices.Protocols(r.Context()), nil
}

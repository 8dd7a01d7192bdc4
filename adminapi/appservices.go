package adminapi

import (
	"net/http"
)

// Application services: Synapse has no admin API for them (it lists them nowhere), so this
// route is Lattice's own, under Synapse's prefix beside the others.
func (s *Server) appServiceRoutes() []route {
	return []route{
		{http.MethodGet, "/v1/appservices", s.handleAppServices, false},
	}
}

// handleAppServices handles GET /_synapse/admin/v1/appservices: every registered service
// with its queue (transactions built and not yet acknowledged, their events, the room event
// stream position it has reached) and its last delivery error. Tokens are not shown.
func (s *Server) handleAppServices(r *http.Request) (any, error) {
	out := []map[string]any{}
	if s.appservices != nil {
		list, err := s.appservices.Statuses(r.Context())
		if err != nil {
			return nil, err
		}
		for _, st := range list {
			var url any
			if st.URL != nil {
				url = *st.URL
			}
			out = append(out, map[string]any{
				"id": st.ID, "url": url, "sender": st.SenderID,
				"namespaces":        st.Namespaces,
				"protocols":         appServiceProtocols(st.Protocols),
				"rate_limited":      st.RateLimited,
				"receive_ephemeral": st.ReceiveEphemera,
				"stream_position":   st.StreamPos,
				"pending_txns":      st.PendingTxns,
				"pending_events":    st.PendingEvents,
				"last_txn_id":       st.LastTxnID,
				"last_error":        st.LastError,
				"last_error_ts":     st.LastErrorTS,
			})
		}
	}
	return map[string]any{"appservices": out, "total": len(out)}, nil
}

// appServiceProtocols is a list of protocols for JSON: [] rather than null.
func appServiceProtocols(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

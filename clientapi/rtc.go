package clientapi

import (
	"net/http"
)

// rtcRoutes are MatrixRTC's (MSC4143) and its identity check's endpoints: transports,
// OpenID tokens, and delayed events (MSC4140, delayedevents.go).
func (s *Server) rtcRoutes() []route {
	const get, post, put = http.MethodGet, http.MethodPost, http.MethodPut
	return []route{
		{post, "/user/{userId}/openid/request_token", true, false, s.handleOpenIDRequestToken},
		{get, "/v1/rtc/transports", true, true, s.handleRTCTransports},
		{get, "/unstable/org.matrix.msc4143/rtc/transports", true, true, s.handleRTCTransports},
	}
}

// handleRTCTransports handles GET /_matrix/client/v1/rtc/transports (MSC4143) and its
// unstable path: the transports of the configuration, in order. The MSC names the list
// "transports"; Synapse and the clients written against it (Element X, matrix-js-sdk) read
// "rtc_transports", so both are given.
func (s *Server) handleRTCTransports(r *http.Request) (any, error) {
	ts := rtcTransports(s.cfg.RTC.Transports)
	return map[string]any{"transports": ts, "rtc_transports": ts}, nil
}

// rtcTransports is the configured list, never null in JSON.
func rtcTransports(ts []map[string]any) []map[string]any {
	if ts == nil {
		return []map[string]any{}
	}
	return ts
}

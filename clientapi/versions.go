package clientapi

import (
	"net/http"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver/ownedstate"
)

// supportedVersions are the spec versions whose client-server requirements this server meets.
// Versions are cumulative, so the list runs without a gap up to the newest one met. The
// optional parts of v1.18 that Lattice leaves out are the administrator suspend and lock
// endpoints (its admin tools are commands) and the OAuth 2.0 API.
var supportedVersions = []string{
	"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9",
	"v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16", "v1.17", "v1.18", "v1.19",
}

// unstableFeatures are the MSCs implemented under names clients look for.
var unstableFeatures = map[string]bool{
	// /sync's use_state_after under its unstable name org.matrix.msc4222.use_state_after.
	"org.matrix.msc4222": true,
	// The authenticated media endpoints (v1.11), for clients that look for the MSC3916 flag
	// rather than the version.
	"org.matrix.msc3916.stable": true,
	// Simplified Sliding Sync (MSC4186), which Element X requires (syncapi/slidingsync.go).
	"org.matrix.simplified_msc3575": true,
	// Account data deletion (MSC3391): DELETE under the unstable prefix, and PUT {} deletes.
	"org.matrix.msc3391": true,
	// rel_types / not_rel_types in room event filters (MSC3874), on /messages and /sync.
	"org.matrix.msc3874": true,
	// Invite filtering (MSC4155): org.matrix.msc4155.invite_permission_config is enforced
	// (roomserver/invitefilter.go).
	"org.matrix.msc4155": true,
	// Thread subscriptions (MSC4306: endpoints under io.element.msc4306, the postcontent push
	// rules) and their sliding sync extension (MSC4308).
	"org.matrix.msc4306": true,
	"org.matrix.msc4308": true,
	// MatrixRTC's transports endpoint (MSC4143, rtc.go).
	"org.matrix.msc4143": true,
	// Delayed events (MSC4140, delayedevents.go), MatrixRTC's leave timers.
	"org.matrix.msc4140": true,
	// Sticky events (MSC4354, sticky.go): PUT /send's sticky duration and /sync's sticky section.
	"org.matrix.msc4354": true,
}

// handleVersions handles GET /_matrix/client/versions. The answer is the same with or
// without an access token (v1.10 lets the endpoint take one).
func (s *Server) handleVersions(r *http.Request) (any, error) {
	return map[string]any{"versions": supportedVersions, "unstable_features": unstableFeatures}, nil
}

// handleCapabilities handles GET /_matrix/client/v3/capabilities.
func (s *Server) handleCapabilities(r *http.Request) (any, error) {
	versions := map[string]string{}
	for v := range gomatrixserverlib.StableRoomVersions() {
		versions[string(v)] = "stable"
	}
	// MSC3757 owned state (roomserver/ownedstate): in these rooms MatrixRTC clients key call
	// membership by state keys that only their user (or a higher power level) may overwrite.
	versions[string(ownedstate.V10)], versions[string(ownedstate.V11)] = "unstable", "unstable"
	return map[string]any{"capabilities": map[string]any{
		"m.room_versions":   map[string]any{"default": s.cfg.Rooms.DefaultVersion, "available": versions},
		"m.change_password": map[string]bool{"enabled": true},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": s.email != nil},
		"m.get_login_token": map[string]bool{"enabled": s.canGetLoginToken(r.Context(), httputil.Device(r.Context()).UserID)},
		// Only the display name and avatar are stored; other fields cannot be set (v1.16).
		"m.profile_fields": map[string]any{"enabled": true, "allowed": []string{"displayname", "avatar_url"}},
	}}, nil
}

// handleWellKnown handles GET /.well-known/matrix/client: client_api.public_base_url, or 404
// when it is not configured (clients then keep the URL they used).
func (s *Server) handleWellKnown(r *http.Request) (any, error) {
	base := s.cfg.ClientAPI.PublicBaseURL
	if base == "" {
		return nil, spec.NotFound("client_api.public_base_url is not configured")
	}
	wk := map[string]any{"m.homeserver": map[string]string{"base_url": base}}
	if len(s.cfg.RTC.Transports) > 0 {
		// The older form of MSC4143's transports (rtc.go), which Element Call still reads.
		wk["org.matrix.msc4143.rtc_foci"] = s.cfg.RTC.Transports
	}
	return wk, nil
}

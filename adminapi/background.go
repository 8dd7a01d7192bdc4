package adminapi

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// Background jobs (Synapse's docs/usage/administration/admin_api/background_updates.md).
// Lattice has no database background updates (its migrations run at start); its background
// work is history purges (purge_history and the retention job) and room deletions, and that
// is what the status reports, one entry per running job keyed by its kind and ID (Synapse
// keys its single entry by database name; tools read the entries as a map). Lattice counts no
// items, so total_item_count and average_items_per_ms are 0; total_duration_ms is the time
// since the job started. Disabling background updates pauses the retention job's scheduled
// runs (a purge or deletion an admin asks for still runs, and one under way finishes its
// batch); like Synapse's, the switch does not outlive a restart.

// backgroundState is the enabled switch; the zero value is enabled.
type backgroundState struct {
	disabled atomic.Bool
}

func (s *Server) backgroundRoutes() []route {
	return []route{
		{http.MethodGet, "/v1/background_updates/status", s.handleBackgroundStatus, false},
		{http.MethodPost, "/v1/background_updates/enabled", s.handleBackgroundEnabled, false},
	}
}

// BackgroundUpdatesEnabled reports whether an admin left background updates enabled: the
// retention job skips its scheduled runs while they are not (cmd/lattice wires it).
func (s *Server) BackgroundUpdatesEnabled() bool { return !s.bg.disabled.Load() }

// handleBackgroundStatus handles GET /v1/background_updates/status.
func (s *Server) handleBackgroundStatus(r *http.Request) (any, error) {
	jobs, err := s.db.RunningJobs(r.Context())
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixMilli()
	current := map[string]any{}
	for _, j := range jobs {
		current[j.Kind+"/"+j.ID] = map[string]any{
			"name":                 j.Kind + " " + j.RoomID,
			"total_item_count":     0,
			"total_duration_ms":    float64(max(now-j.StartedTS, 0)),
			"average_items_per_ms": 0.0,
		}
	}
	return map[string]any{"enabled": s.BackgroundUpdatesEnabled(), "current_updates": current}, nil
}

// handleBackgroundEnabled handles POST /v1/background_updates/enabled {"enabled": bool}
// (absent: true, as Synapse).
func (s *Server) handleBackgroundEnabled(r *http.Request) (any, error) {
	var body struct {
		Enabled json.RawMessage `json:"enabled"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	enabled := true
	if len(body.Enabled) > 0 && (string(body.Enabled) == "null" || json.Unmarshal(body.Enabled, &enabled) != nil) {
		return nil, spec.InvalidParam("enabled must be a boolean")
	}
	s.bg.disabled.Store(!enabled)
	s.audit(r, "set background updates", "enabled", enabled)
	return map[string]bool{"enabled": enabled}, nil
}

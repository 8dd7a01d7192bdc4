package federationapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// handleTimestampToEvent handles GET /_matrix/federation/v1/timestamp_to_event/{roomId}: the
// event nearest to ts in the direction dir that the asking server may see.
func (s *Server) handleTimestampToEvent(r *http.Request) (any, error) {
	ctx := r.Context()
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	ts, forwards, err := httputil.TimestampQuery(r)
	if err != nil {
		return nil, err
	}
	return s.rs.EventNearTimeForServer(ctx, request(ctx).Origin(), roomID, ts, forwards)
}

// TimestampToEvent implements roomserver.Remote (GET /timestamp_to_event).
func (r *remote) TimestampToEvent(ctx context.Context, server spec.ServerName, roomID string, ts int64, forwards bool) (string, int64, error) {
	dir := "b"
	if forwards {
		dir = "f"
	}
	path := fmt.Sprintf("/_matrix/federation/v1/timestamp_to_event/%s?ts=%d&dir=%s", url.PathEscape(roomID), ts, dir)
	raw, err := r.s.getRaw(ctx, server, path)
	if err != nil {
		return "", 0, err
	}
	var res struct {
		EventID  string `json:"event_id"`
		OriginTS int64  `json:"origin_server_ts"`
	}
	if err := json.Unmarshal(raw, &res); err != nil || res.EventID == "" {
		return "", 0, fmt.Errorf("timestamp_to_event answer of %s: %.200s", server, raw)
	}
	return res.EventID, res.OriginTS, nil
}

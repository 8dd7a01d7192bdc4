package syncapi

import (
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
)

// handleTimestampToEvent handles GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event:
// the event nearest to ts in the direction dir that the user may see.
func (s *Server) handleTimestampToEvent(r *http.Request) (any, error) {
	ctx := r.Context()
	dev := httputil.Device(ctx)
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	ts, err := strconv.ParseInt(q.Get("ts"), 10, 64)
	if err != nil {
		return nil, spec.InvalidParam("ts must be a timestamp in milliseconds")
	}
	dir := q.Get("dir")
	if dir != "f" && dir != "b" {
		return nil, spec.InvalidParam("dir must be f or b")
	}
	vis, room, err := s.memberVisibility(ctx, roomID, dev.UserID)
	if err != nil {
		return nil, err
	}
	// Look a little further than the nearest event, in case the nearest are hidden.
	evs, err := s.db.EventsNearTime(ctx, room.NID, ts, dir == "f", 50)
	if err != nil {
		return nil, err
	}
	for _, ev := range evs {
		if ok, err := vis.canSee(ctx, ev); err != nil {
			return nil, err
		} else if ok {
			return map[string]any{"event_id": ev.EventID, "origin_server_ts": ev.OriginTS}, nil
		}
	}
	return nil, spec.NotFound("no event found in that direction")
}

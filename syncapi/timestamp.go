package syncapi

import (
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
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
	ts, forwards, err := httputil.TimestampQuery(r)
	if err != nil {
		return nil, err
	}
	vis, room, err := s.memberVisibility(ctx, roomID, dev.UserID)
	if err != nil {
		return nil, err
	}
	// Look a little further than the nearest event, in case the nearest are hidden.
	evs, err := s.db.EventsNearTime(ctx, room.NID, ts, forwards, 50)
	if err != nil {
		return nil, err
	}
	var found *storage.Event
	for _, ev := range evs {
		if ok, err := vis.canSee(ctx, ev); err != nil {
			return nil, err
		} else if ok {
			found = ev
			break
		}
	}
	// The time may be before this server's history of the room: the other servers may
	// have a nearer event (the federation timestamp_to_event).
	if s.rooms.HistoryMayBeElsewhere(ctx, roomID, found, forwards) {
		remote, err := s.rooms.RemoteEventNearTime(ctx, roomID, ts, forwards)
		if err == nil && (found == nil || nearer(remote.OriginTS, found.OriginTS, ts)) {
			return remote, nil
		}
	}
	if found == nil {
		return nil, spec.NotFound("no event found in that direction")
	}
	return roomserver.EventNearTime{EventID: found.EventID, OriginTS: found.OriginTS}, nil
}

// nearer reports whether timestamp a is nearer to ts than b.
func nearer(a, b, ts int64) bool {
	return abs(a-ts) < abs(b-ts)
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

package roomserver

import (
	"context"
	"errors"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// EventNearTime is an answer of timestamp_to_event.
type EventNearTime struct {
	EventID  string `json:"event_id"`
	OriginTS int64  `json:"origin_server_ts"`
}

// EventNearTimeForServer answers GET /_matrix/federation/v1/timestamp_to_event for server:
// the accepted event of the room nearest to ts in the direction asked that server may see.
func (s *Server) EventNearTimeForServer(ctx context.Context, server spec.ServerName, roomID string, ts int64, forwards bool) (*EventNearTime, error) {
	row, _, err := s.storedRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	// A little further than the nearest, in case the nearest are hidden from the server.
	evs, err := s.db.EventsNearTime(ctx, row.NID, ts, forwards, 50)
	if err != nil {
		return nil, err
	}
	view := s.newServerView(server)
	for _, ev := range evs {
		if ok, err := view.canSee(ctx, ev); err != nil {
			return nil, err
		} else if ok {
			return &EventNearTime{EventID: ev.EventID, OriginTS: ev.OriginTS}, nil
		}
	}
	return nil, spec.NotFound("no event found in that direction")
}

// HistoryMayBeElsewhere reports whether an event nearer to ts than found (the nearest this
// server has in the direction asked, nil for none) may be on other servers of the room: the
// client-server timestamp_to_event then asks them. The spec leaves the heuristic to the
// server, suggesting a look at whether the found event is next to a gap: here, nothing found
// going backwards (the time is before this server's history), or, going forwards, a found
// event some of whose prev_events this server does not hold (its history starts there, with
// this server's join typically).
func (s *Server) HistoryMayBeElsewhere(ctx context.Context, roomID string, found *storage.Event, forwards bool) bool {
	if s.remote == nil {
		return false
	}
	if found == nil {
		return true
	}
	if !forwards || found.Type == spec.MRoomCreate {
		return false
	}
	_, ver, err := s.storedRoom(ctx, roomID)
	if err != nil {
		return false
	}
	pdus, err := s.pdusOf(ctx, ver, []*storage.Event{found})
	if err != nil || len(pdus) == 0 {
		return false
	}
	for _, id := range pdus[0].PrevEventIDs() {
		prev, err := s.db.Event(ctx, id)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && !prev.Visible()) {
			return true
		}
	}
	return false
}

// RemoteEventNearTime asks the other servers of the room, those likeliest to hold its early
// history first, for the event nearest to ts (GET /timestamp_to_event), and returns the
// first answer; M_NOT_FOUND when none has one.
func (s *Server) RemoteEventNearTime(ctx context.Context, roomID string, ts int64, forwards bool) (*EventNearTime, error) {
	if s.remote == nil {
		return nil, spec.NotFound("no event found in that direction")
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	servers := s.historyServers(ctx, r)
	r.unlock() // no network I/O under the room's lock
	for _, server := range servers {
		id, originTS, err := s.remote.TimestampToEvent(ctx, server, roomID, ts, forwards)
		if err != nil {
			s.log.Info("timestamp_to_event: no answer", "destination", server, "room_id", roomID, "err", err)
			continue
		}
		return &EventNearTime{EventID: id, OriginTS: originTS}, nil
	}
	return nil, spec.NotFound("no event found in that direction")
}

package syncapi

import (
	"context"
	"time"

	"github.com/lattice-chat/lattice/storage"
)

// maxStickyEvents bounds the sticky section of one room. MSC4354 suggests 100 and lets later
// responses carry the rest, which needs a sticky stream position of its own; until then the
// bound only guards against abuse, as an hour of sticky events per room is normally small.
const maxStickyEvents = 1000

// stickySection returns the sticky section of a joined room (MSC4354, "Sync API changes",
// under its unstable name msc4354_sticky): the events in (from, to] that are still sticky,
// without those already in the timeline, each with the milliseconds it stays sticky in
// unsigned. from is 0 for an initial sync or a room the user just joined: every sticky event.
// nil when there are none.
func (s *Server) stickySection(ctx context.Context, req syncRequest, m storage.Membership, from, to int64, tl timeline) (*eventList, error) {
	now := time.Now().UnixMilli()
	sticky, err := s.db.StickyEvents(ctx, m.RoomNID, from, to, now, maxStickyEvents)
	if err != nil || len(sticky) == 0 {
		return nil, err
	}
	inTimeline := make(map[string]bool, len(tl.Events))
	for _, ce := range tl.Events {
		inTimeline[ce.EventID] = true
	}
	expires := map[string]int64{}
	var evs []*storage.Event
	for _, se := range sticky {
		if !inTimeline[se.EventID] {
			evs = append(evs, se.Event)
			expires[se.EventID] = se.ExpiresTS
		}
	}
	evs = dropIgnored(evs, req.viewer.Ignored)
	if len(evs) == 0 {
		return nil, nil
	}
	ces, err := s.rooms.ClientEvents(ctx, m.RoomID, evs, req.viewer)
	if err != nil {
		return nil, err
	}
	list := &eventList{Events: make([]any, 0, len(ces))}
	for _, ce := range ces {
		if ce.Unsigned == nil {
			ce.Unsigned = map[string]any{}
		}
		ce.Unsigned["msc4354_sticky_duration_ttl_ms"] = max(expires[ce.EventID]-now, 0)
		list.Events = append(list.Events, ce)
	}
	return list, nil
}

package syncapi

import (
	"cmp"
	"context"
	"slices"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// prefetch holds what the joined rooms of an initial (or full_state) sync need from the
// database, read for all of them at once (storage's batched reads) before the rooms are built
// one by one: a user in a thousand rooms costs a few statements rather than ten thousand.
// Each room's code looks here first and falls back to its own reads for what is missing (a
// room whose timeline the visibility rules cut, say).
type prefetch struct {
	upTo      int64                           // the stream position the timelines end at
	limit     int                             // the timeline limit they were read with
	timelines map[int64]*storage.RoomTimeline // room NID -> newest events up to upTo
	events    map[int64]*storage.Event        // event NID -> event: the rooms' state events
	members   map[int64][]storage.Membership  // room NID -> memberships, for the summaries
	read      map[int64]map[string]int64      // room NID -> the user's read positions
}

// prefetchJoined reads ahead for the joined rooms of an initial or full_state sync: their
// timelines, the state at the start of each timeline and at upTo, members and read positions.
func (s *Server) prefetchJoined(ctx context.Context, req syncRequest, memberships []storage.Membership, upTo int64) (*prefetch, error) {
	var rooms []int64
	for _, m := range memberships {
		if m.Membership == spec.Join && !m.Forgotten && allowsRoom(req.filter.Room.Rooms, req.filter.Room.NotRooms, m.RoomID) {
			rooms = append(rooms, m.RoomNID)
		}
	}
	if len(rooms) < 2 {
		return nil, nil // nothing to batch
	}
	p := &prefetch{upTo: upTo, limit: req.filter.Room.Timeline.limit(defaultTimelineLimit, maxTimelineLimit)}
	var err error
	if p.timelines, err = s.db.RoomsEventsAfter(ctx, rooms, 0, upTo, p.limit); err != nil {
		return nil, err
	}
	// The state events: those before each timeline and the room's current state at upTo
	// (the state after its newest event), which reconcileState compares with.
	need := map[int64]bool{}
	addState := func(snapshotNID int64) error {
		st, err := s.rooms.StateAt(ctx, snapshotNID)
		if err != nil {
			return err
		}
		for _, nid := range st {
			need[nid] = true
		}
		return nil
	}
	for _, tl := range p.timelines {
		if len(tl.Events) == 0 {
			continue
		}
		if req.stateAfter {
			// state_after needs only the current state, read below.
		} else if err := addState(tl.Events[0].StateBeforeNID); err != nil {
			return nil, err
		}
		last := tl.Events[len(tl.Events)-1]
		cur, err := s.stateOnceCommitted(ctx, last)
		if err != nil {
			return nil, err
		}
		for _, nid := range cur {
			need[nid] = true
		}
	}
	nids := make([]int64, 0, len(need))
	for nid := range need {
		nids = append(nids, nid)
	}
	evs, err := s.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	p.events = make(map[int64]*storage.Event, len(evs))
	for _, ev := range evs {
		p.events[ev.NID] = ev
	}
	if p.members, err = s.db.RoomsMembers(ctx, rooms); err != nil {
		return nil, err
	}
	if p.read, err = s.db.RoomsReadPositions(ctx, req.viewer.UserID, rooms); err != nil {
		return nil, err
	}
	return p, nil
}

// timeline returns the prefetched timeline of a room for the range (from, to], if there is one.
func (p *prefetch) timeline(roomNID, from, to int64, limit int) (*storage.RoomTimeline, bool) {
	if p == nil || from != 0 || to != p.upTo || limit != p.limit {
		return nil, false
	}
	tl, ok := p.timelines[roomNID]
	if !ok {
		tl = &storage.RoomTimeline{} // no events in the range
	}
	return tl, true
}

// lastEvent returns the room's newest event at or before pos, when the prefetch knows it:
// the last of its timeline (read before any filter).
func (p *prefetch) lastEvent(roomNID, pos int64) (*storage.Event, error, bool) {
	if p == nil || pos != p.upTo {
		return nil, nil, false
	}
	tl, ok := p.timelines[roomNID]
	if !ok || len(tl.Events) == 0 {
		return nil, storage.ErrNotFound, true
	}
	return tl.Events[len(tl.Events)-1], nil, true
}

// eventsByNID returns the events with the given NIDs in NID order, from the prefetch where it
// has them and from the database otherwise.
func (s *Server) eventsByNID(ctx context.Context, p *prefetch, nids []int64) ([]*storage.Event, error) {
	if p == nil || len(nids) == 0 {
		return s.db.EventsByNID(ctx, nids)
	}
	out := make([]*storage.Event, 0, len(nids))
	var missing []int64
	for _, nid := range nids {
		if ev, ok := p.events[nid]; ok {
			out = append(out, ev)
		} else {
			missing = append(missing, nid)
		}
	}
	if len(missing) > 0 {
		more, err := s.db.EventsByNID(ctx, missing)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	sortByNID(out)
	return out, nil
}

// roomMembers returns the prefetched memberships of a room.
func (p *prefetch) roomMembers(roomNID int64) ([]storage.Membership, bool) {
	if p == nil {
		return nil, false
	}
	ms, ok := p.members[roomNID]
	return ms, ok
}

func sortByNID(evs []*storage.Event) {
	slices.SortFunc(evs, func(a, b *storage.Event) int { return cmp.Compare(a.NID, b.NID) })
}

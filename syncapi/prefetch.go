package syncapi

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// prefetch holds what the joined rooms of an initial (or full_state) sync need from the
// database, read for prefetchRooms of them at once (storage's batched reads) before those
// rooms are built one by one: a user in a thousand rooms costs about a hundred statements
// rather than ten thousand.
// Each room's code looks here first and falls back to its own reads for what is missing (a
// room whose timeline the visibility rules cut, say).
type prefetch struct {
	upTo      int64                           // the stream position the timelines end at
	limit     int                             // the timeline limit they were read with
	timelines map[int64]*storage.RoomTimeline // room NID -> newest events up to upTo
	events    map[int64]*storage.Event        // event NID -> event: the rooms' state events
	members   map[int64][]storage.Membership  // room NID -> memberships, for the summaries
	read      map[int64]map[string]int64      // room NID -> the user's read positions
	// counts holds the unread counts (after read) of the rooms the unread cache had no
	// counts for, up to upTo (prefetchUnread).
	counts map[int64]map[string]storage.UnreadCount
	// stateOf lists the NIDs in events of each room's state events, for done.
	stateOf map[int64][]int64
	// rooms are the rooms timelines, events and members were read for (and not done yet).
	rooms map[int64]bool
}

// prefetchRooms is how many rooms a prefetch reads for at once: the statements of an initial
// sync grow by a few per prefetchRooms rooms, and the events read ahead and not yet formatted
// stay a small part of the response.
const prefetchRooms = 100

// then returns the prefetch next for the following rooms, keeping the read positions p holds
// (the unread counts, filled last, need every room's).
func (p *prefetch) then(next *prefetch) *prefetch {
	if p == nil {
		return next
	}
	if next == nil {
		p.rooms = nil // what is left belongs to rooms already built
		return p
	}
	for room, r := range p.read {
		next.read[room] = r
	}
	return next
}

// done drops what was read ahead for a room once its section is built, so that the memory of
// the events goes as the response grows.
func (p *prefetch) done(roomNID int64) {
	if p == nil {
		return
	}
	delete(p.rooms, roomNID)
	delete(p.timelines, roomNID)
	for _, nid := range p.stateOf[roomNID] {
		delete(p.events, nid)
	}
	delete(p.stateOf, roomNID)
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
	p := &prefetch{upTo: upTo, limit: req.filter.Room.Timeline.limit(defaultTimelineLimit, maxTimelineLimit), rooms: map[int64]bool{}}
	for _, r := range rooms {
		p.rooms[r] = true
	}
	var err error
	if p.timelines, err = s.db.RoomsEventsAfter(ctx, rooms, 0, upTo, p.limit); err != nil {
		return nil, err
	}
	// The state events: those before each timeline and the room's current state at upTo
	// (the state after its newest event), which reconcileState compares with.
	need := map[int64]bool{}
	p.stateOf = make(map[int64][]int64, len(p.timelines))
	add := func(roomNID int64, state map[int64]int64) {
		for _, nid := range state {
			if !need[nid] {
				need[nid] = true
				p.stateOf[roomNID] = append(p.stateOf[roomNID], nid)
			}
		}
	}
	// The snapshots before and after each timeline, read together when not cached (a first
	// sync after a start).
	var snaps []int64
	for _, tl := range p.timelines {
		for _, ev := range tl.Events {
			snaps = append(snaps, ev.StateBeforeNID)
		}
		if n := len(tl.Events); n > 0 && tl.Events[n-1].RoomStateNID != 0 {
			snaps = append(snaps, tl.Events[n-1].RoomStateNID)
		}
	}
	if err := s.rooms.PreloadStates(ctx, snaps); err != nil {
		return nil, err
	}
	joinedAt := make(map[int64]int64, len(rooms))
	for _, m := range memberships {
		joinedAt[m.RoomNID] = m.EventNID
	}
	visKeys, err := s.visibilityKeys(ctx, req.viewer.UserID)
	if err != nil {
		return nil, err
	}
	for roomNID, tl := range p.timelines {
		if len(tl.Events) == 0 {
			continue
		}
		// The events before the user's membership are checked against the history
		// visibility and the user's membership in the state before them.
		for _, ev := range tl.Events {
			if ev.NID >= joinedAt[roomNID] {
				break
			}
			st, err := s.rooms.StateAt(ctx, ev.StateBeforeNID)
			if err != nil {
				return nil, err
			}
			for _, k := range visKeys {
				if nid, ok := st[k]; ok && k != 0 {
					add(roomNID, map[int64]int64{k: nid})
				}
			}
		}
		if !req.stateAfter { // state_after needs only the current state
			st, err := s.rooms.StateAt(ctx, tl.Events[0].StateBeforeNID)
			if err != nil {
				return nil, err
			}
			add(roomNID, st)
		}
		cur, err := s.stateOnceCommitted(ctx, tl.Events[len(tl.Events)-1])
		if err != nil {
			return nil, err
		}
		add(roomNID, cur)
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
	for _, r := range rooms {
		if p.read[r] == nil {
			p.read[r] = map[string]int64{} // no receipts: read nothing
		}
	}
	return p, nil
}

// timeline returns the prefetched timeline of a room for the range (from, to], if there is one.
func (p *prefetch) timeline(roomNID, from, to int64, limit int) (*storage.RoomTimeline, bool) {
	if p == nil || from != 0 || to != p.upTo || limit != p.limit || !p.rooms[roomNID] {
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
	if p == nil || pos != p.upTo || !p.rooms[roomNID] {
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
	if p == nil || !p.rooms[roomNID] {
		return nil, false
	}
	ms, ok := p.members[roomNID]
	return ms, ok
}

func sortByNID(evs []*storage.Event) {
	slices.SortFunc(evs, func(a, b *storage.Event) int { return cmp.Compare(a.NID, b.NID) })
}

// readOf returns the user's prefetched read positions in a room, if they were read.
func (p *prefetch) readOf(roomNID int64) (map[string]int64, bool) {
	if p == nil {
		return nil, false
	}
	r, ok := p.read[roomNID]
	return r, ok
}

// preReader reads events from a prefetch, and from the database what it does not hold: the
// event reader roomserver's formatting uses for an initial sync.
type preReader struct {
	s *Server
	p *prefetch
}

func (r preReader) EventsByNID(ctx context.Context, nids []int64) ([]*storage.Event, error) {
	return r.s.eventsByNID(ctx, r.p, nids)
}

// stateContent returns the content of the event state holds for key, nil when none: through
// the prefetch where it has the event.
func (s *Server) stateContent(ctx context.Context, p *prefetch, state map[int64]int64, key storage.StateKey) map[string]any {
	if p == nil {
		return s.rooms.StateContent(ctx, state, key)
	}
	knid, err := s.rooms.StateKeyNID(ctx, key)
	if err != nil || knid == 0 {
		return nil
	}
	nid, ok := state[knid]
	if !ok {
		return nil
	}
	evs, err := s.eventsByNID(ctx, p, []int64{nid})
	if err != nil || len(evs) == 0 {
		return nil
	}
	var c struct {
		Content map[string]any `json:"content"`
	}
	_ = json.Unmarshal(evs[0].JSON, &c)
	return c.Content
}

// visibilityKeys returns the state key NIDs visibility looks up for userID: the history
// visibility and the user's membership (0 for a pair no event used).
func (s *Server) visibilityKeys(ctx context.Context, userID string) ([]int64, error) {
	hv, err := s.rooms.StateKeyNID(ctx, storage.StateKey{Type: spec.MRoomHistoryVisibility})
	if err != nil {
		return nil, err
	}
	member, err := s.rooms.StateKeyNID(ctx, storage.StateKey{Type: spec.MRoomMember, StateKey: userID})
	return []int64{hv, member}, err
}

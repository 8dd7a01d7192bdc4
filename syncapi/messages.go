package syncapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

const (
	defaultMessagesLimit = 10
	maxMessagesLimit     = 1000
)

// pagePos decodes a /messages token: a pageToken, or a /sync since-token (as next_batch may
// be used), which stands just after the room events of the stream up to its position: the
// events the /sync that gave it had delivered, wherever they are in topological order.
func pagePos(tok string) (storage.PagePos, error) {
	if p, ok := parsePageToken(tok); ok {
		return p, nil
	}
	st, err := ParseToken(tok)
	if err != nil {
		return storage.PagePos{}, spec.InvalidParam("invalid pagination token")
	}
	return storage.StreamSplit(st.PDU + 1), nil
}

// handleMessages handles GET /rooms/{roomId}/messages.
func (s *Server) handleMessages(r *http.Request) (any, error) {
	ctx := r.Context()
	dev := httputil.Device(ctx)
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	// Membership first, as the reference server does: a non-member learns nothing from the
	// validation of their parameters (the endpoint documents only 403 for them).
	vis, room, err := s.memberVisibility(ctx, roomID, dev.UserID)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir != "b" && dir != "f" {
		return nil, spec.InvalidParam("dir must be b or f")
	}
	backwards := dir == "b"
	limit := defaultMessagesLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return nil, spec.InvalidParam("limit must be a non-negative integer")
		}
		limit = min(max(n, 1), maxMessagesLimit)
	}
	filter, err := parseRoomEventFilter(q.Get("filter"))
	if err != nil {
		return nil, err
	}
	from := storage.Plain(storage.TopoEnd)
	if !backwards {
		from = storage.Plain(storage.TopoStart)
	}
	start := ""
	if t := q.Get("from"); t != "" {
		if from, err = pagePos(t); err != nil {
			return nil, err
		}
		start = t
	}
	var to *storage.PagePos
	if t := q.Get("to"); t != "" {
		p, err := pagePos(t)
		if err != nil {
			return nil, err
		}
		to = &p
	}
	viewer := s.viewer(ctx, dev)
	page := messagesPage{s: s, roomID: roomID, roomNID: room.NID, vis: vis, filter: filter, ignored: viewer.Ignored, to: to, backwards: backwards, limit: limit}
	kept, end, err := page.read(ctx, from)
	if err != nil {
		return nil, err
	}
	if start == "" {
		start = pageToken(from)
	}
	resp := map[string]any{"start": start}
	if end != nil {
		resp["end"] = pageToken(*end)
	}
	chunk, err := s.rooms.ClientEvents(ctx, roomID, kept, viewer)
	if err != nil {
		return nil, err
	}
	resp["chunk"] = chunk
	if filter.LazyLoadMembers {
		state, err := s.memberEventsFor(ctx, room.NID, roomID, chunk, viewer)
		if err != nil {
			return nil, err
		}
		resp["state"] = state
	}
	return resp, nil
}

// maxMessagesScan bounds the events one /messages request reads to fill a filtered page.
const maxMessagesScan = 5000

// messagesPage reads one page of /messages: up to limit events the user may see that pass the
// filter, so that a client paging through only some event types gets full pages (a sparse
// filter reads on, up to maxMessagesScan events). Backwards, when the local history runs out
// before the room's beginning, the other servers are asked for more (backfill).
type messagesPage struct {
	s         *Server
	roomID    string
	roomNID   int64
	vis       *visibility
	filter    RoomEventFilter
	ignored   map[string]bool
	to        *storage.PagePos
	backwards bool
	limit     int
}

// read returns the page's events from pos and the position the next page starts at, nil when
// history (up to "to") has been read to its end.
func (p *messagesPage) read(ctx context.Context, pos storage.PagePos) ([]*storage.Event, *storage.PagePos, error) {
	var kept []*storage.Event
	backfilled := false
	for scanned := 0; scanned < maxMessagesScan; {
		evs, err := p.s.db.RoomEventsPage(ctx, p.roomNID, pos, p.to, p.backwards, p.limit)
		if err != nil {
			return nil, nil, err
		}
		if p.backwards && p.to == nil && !backfilled && len(evs) < p.limit && (len(evs) == 0 || evs[len(evs)-1].Type != spec.MRoomCreate) {
			// Local history has run out before the room's beginning: ask the other servers.
			backfilled = true
			if n, err := p.s.rooms.Backfill(ctx, p.roomID, p.limit-len(kept)); err != nil {
				p.s.log.Warn("backfill failed", "room_id", p.roomID, "err", err)
			} else if n > 0 {
				continue
			}
		}
		scanned += len(evs)
		visible, err := p.vis.filter(ctx, evs)
		if err != nil {
			return nil, nil, err
		}
		passes := map[int64]bool{}
		for _, ev := range dropIgnored(visible, p.ignored) {
			passes[ev.NID] = p.filter.allowsEvent(ev) && allowsRoom(p.filter.Rooms, p.filter.NotRooms, p.roomID)
		}
		for i, ev := range evs {
			if passes[ev.NID] {
				kept = append(kept, ev)
			}
			// The next page starts just before this event (backwards) or just after it.
			pos = pos.Passed(ev, p.backwards)
			if len(kept) == p.limit && (i < len(evs)-1 || len(evs) == p.limit) {
				return kept, &pos, nil
			}
		}
		if len(evs) < p.limit {
			return kept, nil, nil // the end of the history
		}
	}
	return kept, &pos, nil
}

// memberEventsFor returns the current member events of the senders of evs.
func (s *Server) memberEventsFor(ctx context.Context, roomNID int64, roomID string, evs []roomserver.ClientEvent, viewer roomserver.Viewer) ([]roomserver.ClientEvent, error) {
	seen := map[string]bool{}
	var members []*storage.Event
	for _, ev := range evs {
		if seen[ev.Sender] {
			continue
		}
		seen[ev.Sender] = true
		m, err := s.db.CurrentStateEvent(ctx, roomNID, storage.StateKey{Type: spec.MRoomMember, StateKey: ev.Sender})
		if errors.Is(err, storage.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		members = append(members, m)
	}
	out, err := s.rooms.StateClientEvents(ctx, roomID, members, viewer)
	if out == nil {
		out = []roomserver.ClientEvent{}
	}
	return out, err
}

// visibleEvent returns an event of the room that the user may see, or M_NOT_FOUND.
func (s *Server) visibleEvent(ctx context.Context, vis *visibility, room *storage.Room, eventID string) (*storage.Event, error) {
	ev, err := s.db.Event(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (ev.RoomNID != room.NID || !ev.Visible())) {
		return nil, spec.NotFound("event not found")
	} else if err != nil {
		return nil, err
	}
	ok, err := vis.canSee(ctx, ev)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, spec.NotFound("event not found")
	}
	return ev, nil
}

// pathEvent returns the {eventId} of the {roomId} in the path when the user may see it (else
// M_NOT_FOUND, which does not tell whether it exists), with the visibility used to decide.
func (s *Server) pathEvent(r *http.Request) (string, *visibility, *storage.Room, *storage.Event, error) {
	ctx := r.Context()
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return "", nil, nil, nil, err
	}
	vis, room, err := s.newVisibility(ctx, roomID, httputil.Device(ctx).UserID)
	if err != nil {
		return "", nil, nil, nil, spec.NotFound("event not found")
	}
	ev, err := s.visibleEvent(ctx, vis, room, httputil.PathVar(r, "eventId"))
	if err != nil {
		return "", nil, nil, nil, err
	}
	return roomID, vis, room, ev, nil
}

// handleEvent handles GET /rooms/{roomId}/event/{eventId}.
func (s *Server) handleEvent(r *http.Request) (any, error) {
	roomID, _, _, ev, err := s.pathEvent(r)
	if err != nil {
		return nil, err
	}
	return s.rooms.ClientEvent(r.Context(), roomID, ev, s.viewer(r.Context(), httputil.Device(r.Context())))
}

// handleContext handles GET /rooms/{roomId}/context/{eventId}.
func (s *Server) handleContext(r *http.Request) (any, error) {
	ctx := r.Context()
	dev := httputil.Device(ctx)
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	limit := defaultMessagesLimit
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return nil, spec.InvalidParam("limit must be a non-negative integer")
		}
		limit = min(n, maxMessagesLimit)
	}
	filter, err := parseRoomEventFilter(r.URL.Query().Get("filter"))
	if err != nil {
		return nil, err
	}
	vis, room, err := s.newVisibility(ctx, roomID, dev.UserID)
	if err != nil {
		return nil, err
	}
	ev, err := s.visibleEvent(ctx, vis, room, httputil.PathVar(r, "eventId"))
	if err != nil {
		return nil, err
	}
	at := storage.TopoPos{Depth: ev.Depth, NID: ev.NID}
	nBefore := limit / 2
	nAfter := limit - nBefore
	before, after := []*storage.Event{}, []*storage.Event{}
	if nBefore > 0 {
		if before, err = s.db.RoomEventsTopo(ctx, room.NID, at, nil, true, nBefore); err != nil {
			return nil, err
		}
	}
	if nAfter > 0 {
		if after, err = s.db.RoomEventsTopo(ctx, room.NID, storage.After(at), nil, false, nAfter); err != nil {
			return nil, err
		}
	}
	start, end := at, storage.After(at)
	if len(before) > 0 {
		start = storage.TopoPos{Depth: before[len(before)-1].Depth, NID: before[len(before)-1].NID}
	}
	if len(after) > 0 {
		end = storage.After(storage.TopoPos{Depth: after[len(after)-1].Depth, NID: after[len(after)-1].NID})
	}
	viewer := s.viewer(ctx, dev)
	format := func(evs []*storage.Event) ([]roomserver.ClientEvent, error) {
		visible, err := vis.filter(ctx, evs)
		if err != nil {
			return nil, err
		}
		kept := visible[:0]
		for _, e := range dropIgnored(visible, viewer.Ignored) {
			if filter.allowsEvent(e) {
				kept = append(kept, e)
			}
		}
		out, err := s.rooms.ClientEvents(ctx, roomID, kept, viewer)
		if out == nil {
			out = []roomserver.ClientEvent{}
		}
		return out, err
	}
	beforeEvs, err := format(before)
	if err != nil {
		return nil, err
	}
	afterEvs, err := format(after)
	if err != nil {
		return nil, err
	}
	target, err := s.rooms.ClientEvent(ctx, roomID, ev, viewer)
	if err != nil {
		return nil, err
	}
	stateEvs, err := s.rooms.VisibleState(ctx, roomID, dev.UserID)
	if err != nil {
		return nil, err
	}
	var state []roomserver.ClientEvent
	if filter.LazyLoadMembers {
		all := append(append(append([]roomserver.ClientEvent{}, beforeEvs...), target), afterEvs...)
		state, err = s.memberEventsFor(ctx, room.NID, roomID, all, viewer)
	} else {
		state, err = s.rooms.StateClientEvents(ctx, roomID, stateEvs, viewer)
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"event": target, "events_before": beforeEvs, "events_after": afterEvs,
		"start": topoToken(start), "end": topoToken(end), "state": state,
	}, nil
}

package roomserver

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// The read side of the Server-Server API: what other servers may ask of a room's DAG (GET
// /event, /state, /state_ids, /event_auth, /backfill, POST /get_missing_events), and the
// rule that decides what they may see. Nothing here takes a room's lock: input may hold it
// while it waits on another server, and that server may be the one asking.

// errUnknownEvent is the answer for an event this server does not have, or will not serve.
var errUnknownEvent = spec.NotFound("unknown event")

// storedRoom returns a room's row and version as committed, without its lock.
func (s *Server) storedRoom(ctx context.Context, roomID string) (*storage.Room, gomatrixserverlib.IRoomVersion, error) {
	row, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, errUnknownRoom
	} else if err != nil {
		return nil, nil, err
	}
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(row.Version))
	if err != nil {
		return nil, nil, fmt.Errorf("room %s has unsupported version %s", roomID, row.Version)
	}
	return row, ver, nil
}

// StoredRoomVersion returns the version of a room this server has (M_NOT_FOUND when it has
// none). Unlike RoomVersion it does not wait for the room's lock.
func (s *Server) StoredRoomVersion(ctx context.Context, roomID string) (gomatrixserverlib.IRoomVersion, error) {
	_, ver, err := s.storedRoom(ctx, roomID)
	return ver, err
}

// EventForServer returns an event to serve to server, as the spec's GET /event and the
// checks of /state, /state_ids and /event_auth need it: M_NOT_FOUND when this server does not
// have the event, rejected it, or has it in a room other than roomID (when roomID is not
// empty); M_FORBIDDEN when no user of server could see it (ServerCanSee).
func (s *Server) EventForServer(ctx context.Context, server spec.ServerName, roomID, eventID string) (*storage.Event, error) {
	ev, err := s.db.Event(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errUnknownEvent
	} else if err != nil {
		return nil, err
	}
	if ev.Status == storage.StatusRejected {
		return nil, errUnknownEvent
	}
	if roomID != "" {
		row, _, err := s.storedRoom(ctx, roomID)
		if err != nil {
			return nil, err
		}
		if row.NID != ev.RoomNID {
			return nil, errUnknownEvent
		}
	}
	ok, err := s.ServerCanSee(ctx, server, ev)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, spec.Forbidden("your server may not see this event")
	}
	return ev, nil
}

// StateBeforeEvent returns the state of the room before eventID, not counting the event
// itself: the "state at an event" of the spec's /state and /state_ids. It is M_NOT_FOUND for
// an event this server has not accepted into the room's DAG (an outlier's state is unknown).
func (s *Server) StateBeforeEvent(ctx context.Context, roomID, eventID string) ([]*storage.Event, error) {
	row, _, err := s.storedRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	ev, err := s.db.Event(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errUnknownEvent
	} else if err != nil {
		return nil, err
	}
	if ev.RoomNID != row.NID || !ev.InDAG() {
		return nil, spec.NotFound("the state at this event is unknown")
	}
	// A room joined with partial state knows the state at its events only in part until
	// its resync completes: another server must not take it for the whole.
	if _, err := s.db.PartialStateRoom(ctx, row.NID); err == nil {
		return nil, spec.NotFound("this server has only partial state for the room; try another server")
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	state, err := s.StateAt(ctx, ev.StateBeforeNID)
	if err != nil {
		return nil, err
	}
	nids := make([]int64, 0, len(state))
	for _, nid := range state {
		nids = append(nids, nid)
	}
	return s.db.EventsByNID(ctx, nids)
}

// AuthChain returns the auth chain of the given events of the room: their auth events and
// those events' auth events, recursively, each once. The given events are in it only when
// another one's auth events reach them. Auth events this server does not have are left out.
func (s *Server) AuthChain(ctx context.Context, roomID string, eventIDs []string) ([]*storage.Event, error) {
	_, ver, err := s.storedRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	first, err := s.authEventIDs(ctx, ver, eventIDs)
	if err != nil {
		return nil, err
	}
	out, err := s.authChainEvents(ctx, ver, first)
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NID < out[j].NID })
	return out, nil
}

// authChainEvents returns the stored events of the auth chain that starts at the events
// first: those events, their auth events and so on, each once, read level by level (one
// query per level). Events this server does not have are skipped.
func (s *Server) authChainEvents(ctx context.Context, ver gomatrixserverlib.IRoomVersion, first []string) ([]*storage.Event, error) {
	seen := make(map[string]bool)
	var out []*storage.Event
	next := first
	for len(next) > 0 {
		var ids []string
		for _, id := range next {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		evs, err := s.db.EventsByID(ctx, ids)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
		if next, err = s.authEventIDsOf(ctx, ver, evs); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// authEventIDs returns the auth_events of the stored events with the given IDs.
func (s *Server) authEventIDs(ctx context.Context, ver gomatrixserverlib.IRoomVersion, eventIDs []string) ([]string, error) {
	evs, err := s.db.EventsByID(ctx, eventIDs)
	if err != nil {
		return nil, err
	}
	return s.authEventIDsOf(ctx, ver, evs)
}

func (s *Server) authEventIDsOf(ctx context.Context, ver gomatrixserverlib.IRoomVersion, evs []*storage.Event) ([]string, error) {
	pdus, err := s.pdusOf(ctx, ver, evs)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, p := range pdus {
		ids = append(ids, p.AuthEventIDs()...)
	}
	return ids, nil
}

// pdusOf parses stored events (through the parsed-event cache), in the order given.
func (s *Server) pdusOf(ctx context.Context, ver gomatrixserverlib.IRoomVersion, evs []*storage.Event) ([]gomatrixserverlib.PDU, error) {
	nids := make([]int64, len(evs))
	for i, ev := range evs {
		nids[i] = ev.NID
	}
	m, err := s.pdusByNID(ctx, ver, nids)
	if err != nil {
		return nil, err
	}
	out := make([]gomatrixserverlib.PDU, 0, len(evs))
	for _, nid := range nids {
		if p, ok := m[nid]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// BackfillEvents returns up to limit events of the room's history from the given events
// backwards (GET /backfill): the given events and their ancestors through prev_events,
// deepest first, breadth-first across branches. Only accepted DAG events (Event.InDAG) are
// walked: the walk stops at events this server does not have or holds only as outliers.
func (s *Server) BackfillEvents(ctx context.Context, roomID string, from []string, limit int) ([]*storage.Event, error) {
	row, ver, err := s.storedRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	w := &dagWalk{s: s, ver: ver, roomNID: row.NID, seen: map[string]bool{}}
	if err := w.push(ctx, from); err != nil {
		return nil, err
	}
	var out []*storage.Event
	for len(w.queue) > 0 && len(out) < limit {
		ev := heap.Pop(&w.queue).(*storage.Event)
		out = append(out, ev)
		if err := w.pushPrev(ctx, ev); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// dagWalk walks a room's DAG backwards through prev_events, deepest event first.
type dagWalk struct {
	s        *Server
	ver      gomatrixserverlib.IRoomVersion
	roomNID  int64
	minDepth int64
	seen     map[string]bool // event IDs queued or excluded
	queue    eventHeap
}

// push queues the events with the given IDs that are accepted events of the room.
func (w *dagWalk) push(ctx context.Context, ids []string) error {
	var fresh []string
	for _, id := range ids {
		if !w.seen[id] {
			w.seen[id] = true
			fresh = append(fresh, id)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	evs, err := w.s.db.EventsByID(ctx, fresh)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if ev.RoomNID == w.roomNID && ev.InDAG() && ev.Depth >= w.minDepth {
			heap.Push(&w.queue, ev)
		}
	}
	return nil
}

// pushPrev queues the prev_events of ev.
func (w *dagWalk) pushPrev(ctx context.Context, ev *storage.Event) error {
	pdus, err := w.s.pdusOf(ctx, w.ver, []*storage.Event{ev})
	if err != nil {
		return err
	}
	for _, p := range pdus {
		if err := w.push(ctx, p.PrevEventIDs()); err != nil {
			return err
		}
	}
	return nil
}

// eventHeap is a max-heap of events by depth, then stream position.
type eventHeap []*storage.Event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].Depth != h[j].Depth {
		return h[i].Depth > h[j].Depth
	}
	return h[i].NID > h[j].NID
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(v any)   { *h = append(*h, v.(*storage.Event)) }
func (h *eventHeap) Pop() any {
	old := *h
	ev := old[len(old)-1]
	*h = old[:len(old)-1]
	return ev
}

// EventsForServer returns the JSON of events to send to server in a /backfill or
// /get_missing_events answer: as stored, except that events no user of server could see are
// redacted, so the server keeps an unbroken DAG without learning their content. It is
// M_FORBIDDEN when server may see none of them.
func (s *Server) EventsForServer(ctx context.Context, server spec.ServerName, roomID string, evs []*storage.Event) ([]json.RawMessage, error) {
	_, ver, err := s.storedRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	v := s.newServerView(server)
	out := make([]json.RawMessage, 0, len(evs))
	anyVisible := len(evs) == 0
	for _, ev := range evs {
		ok, err := v.canSee(ctx, ev)
		if err != nil {
			return nil, err
		}
		if ok {
			anyVisible = true
			out = append(out, ev.JSON)
			continue
		}
		redacted, err := ver.RedactEventJSON(ev.JSON)
		if err != nil {
			return nil, fmt.Errorf("redact %s: %w", ev.EventID, err)
		}
		out = append(out, redacted)
	}
	if !anyVisible {
		return nil, spec.Forbidden("your server may not see these events")
	}
	return out, nil
}

// ServerCanSee reports whether server may be sent ev: whether one of its users could see
// it, by the client-server API's history visibility rules applied to the state of the room
// at the event (for its own membership events and history visibility changes, the state
// before or after it):
//  1. history_visibility world_readable: allow;
//  2. a user of server is joined: allow;
//  3. invited, and a user of server is invited: allow;
//  4. shared (also when unset or not understood), and server has or had a joined member
//     (the nearest a server comes to "the user joined at some point after the event"): allow;
//  5. otherwise deny.
//
// The state at an outlier is unknown, so the room's current state stands in for it.
func (s *Server) ServerCanSee(ctx context.Context, server spec.ServerName, ev *storage.Event) (bool, error) {
	return s.newServerView(server).canSee(ctx, ev)
}

// serverView applies ServerCanSee for one server to many events, with what they share
// loaded once.
type serverView struct {
	s       *Server
	server  spec.ServerName
	roomNID int64                // the room users and hadMember were loaded for
	users   []storage.Membership // the server's users who ever had a membership of the room
	current int64                // the room's current state snapshot
	hadMem  *bool                // whether the server has or had a joined member
	byState map[int64]bool       // verdicts by state snapshot, for events that do not change them
}

func (s *Server) newServerView(server spec.ServerName) *serverView {
	return &serverView{s: s, server: server}
}

// load reads the room's side of the view when ev is in another room than the last.
func (v *serverView) load(ctx context.Context, roomNID int64) error {
	if v.roomNID == roomNID && v.byState != nil {
		return nil
	}
	users, err := v.s.db.RoomMembersOfServer(ctx, roomNID, string(v.server))
	if err != nil {
		return err
	}
	roomID, err := v.s.db.RoomIDByNID(ctx, roomNID)
	if err != nil {
		return err
	}
	row, err := v.s.db.Room(ctx, roomID)
	if err != nil {
		return err
	}
	v.roomNID, v.users, v.current, v.hadMem, v.byState = roomNID, users, row.StateSnapshotNID, nil, map[int64]bool{}
	return nil
}

func (v *serverView) canSee(ctx context.Context, ev *storage.Event) (bool, error) {
	if err := v.load(ctx, ev.RoomNID); err != nil {
		return false, err
	}
	snapshot := ev.StateBeforeNID
	if !ev.InDAG() {
		snapshot = v.current
	}
	changesVerdict := ev.Type == spec.MRoomHistoryVisibility || ev.Type == spec.MRoomMember
	if ok, cached := v.byState[snapshot]; cached && !changesVerdict {
		return ok, nil
	}
	state, err := v.s.StateAt(ctx, snapshot)
	if err != nil {
		return false, err
	}
	ok, err := v.allowedBy(ctx, state, nil)
	if err != nil {
		return false, err
	}
	v.byState[snapshot] = ok
	if ok || !changesVerdict || !ev.IsState() || !ev.InDAG() {
		return ok, nil
	}
	return v.allowedBy(ctx, state, ev)
}

// allowedBy applies the rules to a state, with after (when not nil) applied on top of it.
func (v *serverView) allowedBy(ctx context.Context, state map[int64]int64, after *storage.Event) (bool, error) {
	keys := []storage.StateKey{{Type: spec.MRoomHistoryVisibility}}
	for _, m := range v.users {
		keys = append(keys, storage.StateKey{Type: spec.MRoomMember, StateKey: m.UserID})
	}
	contents, err := v.s.stateContents(ctx, state, keys, after)
	if err != nil {
		return false, err
	}
	visibility, _ := contents[0]["history_visibility"].(string)
	if visibility == "world_readable" {
		return true, nil
	}
	for _, c := range contents[1:] {
		switch c["membership"] {
		case spec.Join:
			return true, nil
		case spec.Invite:
			if visibility == "invited" {
				return true, nil
			}
		}
	}
	if visibility == "invited" || visibility == "joined" {
		return false, nil
	}
	return v.hadMember(ctx)
}

// hadMember reports whether a user of the server is joined now or was joined before a later
// membership change (their leave or ban).
func (v *serverView) hadMember(ctx context.Context) (bool, error) {
	if v.hadMem != nil {
		return *v.hadMem, nil
	}
	had := false
	for _, m := range v.users {
		if m.Membership == spec.Join {
			had = true
			break
		}
		if m.Membership != spec.Leave && m.Membership != spec.Ban {
			continue
		}
		evs, err := v.s.db.EventsByNID(ctx, []int64{m.EventNID})
		if err != nil {
			return false, err
		}
		if len(evs) == 0 || !evs[0].InDAG() {
			continue
		}
		before, err := v.s.StateAt(ctx, evs[0].StateBeforeNID)
		if err != nil {
			return false, err
		}
		if c, err := v.s.stateContents(ctx, before, []storage.StateKey{{Type: spec.MRoomMember, StateKey: m.UserID}}, nil); err != nil {
			return false, err
		} else if c[0]["membership"] == spec.Join {
			had = true
			break
		}
	}
	v.hadMem = &had
	return had, nil
}

// stateContents returns the content of the event for each key in state (nil when absent),
// with after, when not nil, replacing the event for its own key.
func (s *Server) stateContents(ctx context.Context, state map[int64]int64, keys []storage.StateKey, after *storage.Event) ([]map[string]any, error) {
	eventNIDs := make([]int64, len(keys))
	var load []int64
	for i, k := range keys {
		knid, err := s.lookupStateKeyNID(ctx, k)
		if err != nil {
			return nil, err
		}
		if knid == 0 {
			continue
		}
		nid := state[knid]
		if after != nil && after.StateKeyNID == knid {
			nid = after.NID
		}
		if nid != 0 {
			eventNIDs[i] = nid
			load = append(load, nid)
		}
	}
	evs, err := s.db.EventsByNID(ctx, load)
	if err != nil {
		return nil, err
	}
	byNID := make(map[int64]*storage.Event, len(evs))
	for _, ev := range evs {
		byNID[ev.NID] = ev
	}
	out := make([]map[string]any, len(keys))
	for i, nid := range eventNIDs {
		if ev := byNID[nid]; ev != nil {
			var e struct {
				Content map[string]any `json:"content"`
			}
			if err := json.Unmarshal(ev.JSON, &e); err != nil {
				return nil, fmt.Errorf("event %s: %w", ev.EventID, err)
			}
			out[i] = e.Content
		}
	}
	return out, nil
}

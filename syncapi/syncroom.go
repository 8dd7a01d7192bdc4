package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

const (
	defaultTimelineLimit = 20
	maxTimelineLimit     = 500
)

// joinedRoom returns the join section of one room, or nil when nothing changed in it.
// A room the user joined after since (or any room of an initial or full_state sync) gets the
// full state at the start of its timeline; otherwise a limited timeline gets the state
// events that happened in the gap, and an unlimited one none.
func (s *Server) joinedRoom(ctx context.Context, req syncRequest, m storage.Membership, since, to int64) (*joinedRoom, error) {
	full := req.since == nil || req.fullState
	if !full && m.EventNID > since {
		joined, err := s.joinedAfter(ctx, m, since)
		if err != nil {
			return nil, err
		}
		full = joined
	}
	from := since
	if full {
		from = 0
	}
	tl, firstNID, stateBefore, err := s.timeline(ctx, req, m, from, to, full)
	if err != nil {
		return nil, err
	}
	sticky, err := s.stickySection(ctx, req, m, from, to, tl)
	if err != nil {
		return nil, err
	}
	if !full && len(tl.Events) == 0 && !tl.Limited && sticky == nil {
		return nil, nil
	}
	var state []*storage.Event
	switch {
	case req.stateAfter:
		state, err = s.stateAfter(ctx, req.pre, m.RoomNID, since, to, full)
	case full:
		state, err = s.stateAtStart(ctx, req.pre, m.RoomNID, stateBefore, to)
	case tl.Limited:
		state, err = s.gapState(ctx, m.RoomNID, since, firstNID)
	}
	if err != nil {
		return nil, err
	}
	if !req.stateAfter {
		if state, err = s.reconcileState(ctx, req.pre, m.RoomNID, since, to, full, state, tl); err != nil {
			return nil, err
		}
	}
	stateEvs, err := s.formatState(ctx, req, m.RoomID, state, tl.Events)
	if err != nil {
		return nil, err
	}
	stateList, stateAfter := &eventList{Events: stateEvs}, (*eventList)(nil)
	if req.stateAfter {
		stateList, stateAfter = nil, stateList
	}
	// The summary changes only with membership: send it when the client has none yet or a
	// membership event is in this response (clients keep the last one they saw).
	summary := map[string]any{}
	membersChanged := full || tl.hasMember || hasMemberState(state)
	if membersChanged {
		if members, ok := req.pre.roomMembers(m.RoomNID); ok {
			summary = summaryOf(members, req.viewer.UserID)
		} else if summary, err = s.summary(ctx, m.RoomNID, req.viewer.UserID); err != nil {
			return nil, err
		}
	}
	jr := &joinedRoom{
		Summary:        summary,
		State:          stateList,
		StateAfter:     stateAfter,
		Timeline:       tl,
		Ephemeral:      eventList{Events: []any{}},
		AccountData:    eventList{Events: []any{}},
		Sticky:         sticky,
		membersChanged: membersChanged,
	}
	jr.unstableNames(req.msc4222)
	return jr, nil
}

func hasMemberState(evs []*storage.Event) bool {
	for _, ev := range evs {
		if ev.Type == spec.MRoomMember {
			return true
		}
	}
	return false
}

// emptyJoinedRoom is the join section of a room whose timeline did not change.
func (s *Server) emptyJoinedRoom(ctx context.Context, m storage.Membership, to int64, useStateAfter, msc4222 bool) (*joinedRoom, error) {
	empty := &eventList{Events: []any{}}
	jr := &joinedRoom{
		Summary:     map[string]any{},
		State:       empty,
		Timeline:    timeline{Events: []roomserver.ClientEvent{}, PrevBatch: pageToken(storage.StreamSplit(to + 1))},
		Ephemeral:   eventList{Events: []any{}},
		AccountData: eventList{Events: []any{}},
	}
	if useStateAfter {
		jr.State, jr.StateAfter = nil, empty
	}
	jr.unstableNames(msc4222)
	return jr, nil
}

// joinedAfter reports whether the user's join happened after since, i.e. the membership
// event at or after since turned a non-join into a join (not a profile change).
func (s *Server) joinedAfter(ctx context.Context, m storage.Membership, since int64) (bool, error) {
	evs, err := s.db.EventsByNID(ctx, []int64{m.EventNID})
	if err != nil || len(evs) == 0 {
		return true, err
	}
	for ev := evs[0]; ; {
		if ev.ReplacesNID == 0 {
			return true, nil
		}
		prev, err := s.db.EventsByNID(ctx, []int64{ev.ReplacesNID})
		if err != nil || len(prev) == 0 {
			return true, err
		}
		if membershipOf(prev[0]) != spec.Join {
			return true, nil
		}
		if prev[0].NID <= since {
			return false, nil
		}
		ev = prev[0]
	}
}

func membershipOf(ev *storage.Event) string {
	var c struct {
		Content struct {
			Membership string `json:"membership"`
		} `json:"content"`
	}
	_ = json.Unmarshal(ev.JSON, &c)
	return c.Content.Membership
}

// timeline returns the newest events of the room in (from, to], limited by the filter, with
// the NID and state-before snapshot of its first event. With checkVisibility, events from
// before the user's current membership are checked against the room's history visibility
// (a room the user just joined); later events are visible to a member by definition.
func (s *Server) timeline(ctx context.Context, req syncRequest, m storage.Membership, from, to int64, checkVisibility bool) (timeline, int64, int64, error) {
	limit := req.filter.Room.Timeline.limit(defaultTimelineLimit, maxTimelineLimit)
	var evs []*storage.Event
	var more bool
	var err error
	if pre, ok := req.pre.timeline(m.RoomNID, from, to, limit); ok {
		// A copy: the filters below reuse the slice's array.
		evs, more = append([]*storage.Event(nil), pre.Events...), pre.More
	} else if evs, more, err = s.db.RoomEventsAfter(ctx, m.RoomNID, from, to, limit); err != nil {
		return timeline{}, 0, 0, err
	}
	tl := timeline{Events: []roomserver.ClientEvent{}, Limited: more}
	if checkVisibility && len(evs) > 0 && evs[0].NID < m.EventNID {
		vis := &visibility{s: s, userID: req.viewer.UserID, membership: m, snapshots: map[int64]snapshotView{}, pre: req.pre}
		if evs, err = vis.filter(ctx, evs); err != nil {
			return timeline{}, 0, 0, err
		}
	}
	firstNID, stateBefore := to+1, int64(-1)
	if len(evs) > 0 {
		firstNID, stateBefore = evs[0].NID, evs[0].StateBeforeNID
	}
	// prev_batch is the point just before the timeline: the events before it in the stream.
	// Not the topological position of its first event: after a fork, older branches' events
	// may be deeper than that event, or newer ones shallower (storage.PagePos).
	tl.PrevBatch = pageToken(storage.StreamSplit(firstNID))
	tl.hasMember = hasMemberState(evs)
	suffix := ":" + string(s.rooms.ServerName())
	for _, ev := range evs {
		if !strings.HasSuffix(ev.Sender, suffix) {
			tl.remote = true
			break
		}
	}
	kept := evs[:0]
	for _, ev := range dropIgnored(evs, req.viewer.Ignored) {
		if req.filter.Room.Timeline.allowsEvent(ev) {
			kept = append(kept, ev)
			if ev.IsState() {
				if tl.stateKeys == nil {
					tl.stateKeys = map[int64]int64{}
				}
				tl.stateKeys[ev.StateKeyNID] = ev.NID
			}
		}
	}
	if req.pre != nil {
		tl.Events, err = s.rooms.ClientEventsFrom(ctx, preReader{s, req.pre}, m.RoomID, kept, req.viewer)
	} else {
		tl.Events, err = s.rooms.ClientEvents(ctx, m.RoomID, kept, req.viewer)
	}
	return tl, firstNID, stateBefore, err
}

// stateAtStart returns the room state of the snapshot before the timeline's first event or,
// when the timeline is empty (snapshotNID < 0: nothing new, or a timeline limit of 0), the
// room's state as at stream position to (the sync's end, or the user's leave).
func (s *Server) stateAtStart(ctx context.Context, pre *prefetch, roomNID, snapshotNID, to int64) ([]*storage.Event, error) {
	var state map[int64]int64
	var err error
	if snapshotNID < 0 {
		state, err = s.currentStateAtWith(ctx, pre, roomNID, to)
	} else {
		state, err = s.rooms.StateAt(ctx, snapshotNID)
	}
	if err != nil {
		return nil, err
	}
	nids := make([]int64, 0, len(state))
	for _, ev := range state {
		nids = append(nids, ev)
	}
	return s.eventsByNID(ctx, pre, nids)
}

// stateAfter returns state_after: the room's current state at stream position to, whole
// (full) or as the events that differ from its current state at since. With federation the
// current state is a resolution of the DAG's branches and may go back to an older event; a
// client that applies state_after follows it, where applying the timeline would not.
func (s *Server) stateAfter(ctx context.Context, pre *prefetch, roomNID, since, to int64, full bool) ([]*storage.Event, error) {
	after, err := s.currentStateAtWith(ctx, pre, roomNID, to)
	if err != nil {
		return nil, err
	}
	before := map[int64]int64{}
	if !full {
		if before, err = s.currentStateAt(ctx, roomNID, since); err != nil {
			return nil, err
		}
	}
	var nids []int64
	for k, ev := range after {
		if before[k] != ev {
			nids = append(nids, ev)
		}
	}
	return s.eventsByNID(ctx, pre, nids)
}

// currentStateAt returns the room's current state (state key NID -> event NID) as it was at
// stream position pos: recorded with each event since migration 0015, and for older events
// (linear histories) the state after the event.
func (s *Server) currentStateAt(ctx context.Context, roomNID, pos int64) (map[int64]int64, error) {
	return s.currentStateAtWith(ctx, nil, roomNID, pos)
}

// currentStateAtWith is currentStateAt taking the room's newest event from pre when it has it.
func (s *Server) currentStateAtWith(ctx context.Context, pre *prefetch, roomNID, pos int64) (map[int64]int64, error) {
	ev, err, ok := pre.lastEvent(roomNID, pos)
	if !ok {
		ev, err = s.db.LastRoomEvent(ctx, roomNID, pos)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return map[int64]int64{}, nil
	} else if err != nil {
		return nil, err
	}
	return s.stateOnceCommitted(ctx, ev)
}

// stateOnceCommitted returns the room's current state once ev was committed: recorded with
// each event since migration 0015, and for older events (linear histories) the state after
// the event.
func (s *Server) stateOnceCommitted(ctx context.Context, ev *storage.Event) (map[int64]int64, error) {
	if ev.RoomStateNID != 0 {
		return s.rooms.StateAt(ctx, ev.RoomStateNID)
	}
	state, err := s.rooms.StateAt(ctx, ev.StateBeforeNID)
	if err != nil || !ev.IsState() {
		return state, err
	}
	out := make(map[int64]int64, len(state)+1)
	for k, v := range state {
		out[k] = v
	}
	out[ev.StateKeyNID] = ev.NID
	return out, nil
}

// reconcileState adds to the state section of a room the current state (at to) that the
// client would not otherwise reach: state that arrived without passing through the timeline
// (learnt through /state_ids when a gap in the DAG was too large to fetch) or that state
// resolution brought back. A key the timeline sets is left to the timeline; where the
// resolved state differs from the timeline's last event for a key, only state_after
// (use_state_after) can tell the client.
func (s *Server) reconcileState(ctx context.Context, pre *prefetch, roomNID, since, to int64, full bool, state []*storage.Event, tl timeline) ([]*storage.Event, error) {
	if !full && (len(tl.Events) == 0 || (!tl.Limited && !tl.remote)) {
		// Local events since the last sync, all in the timeline: the client's state follows.
		return state, nil
	}
	current, err := s.currentStateAtWith(ctx, pre, roomNID, to)
	if err != nil {
		return nil, err
	}
	client := map[int64]int64{}
	if !full {
		if client, err = s.currentStateAt(ctx, roomNID, since); err != nil {
			return nil, err
		}
		client = copyStateMap(client)
	}
	for _, ev := range state {
		client[ev.StateKeyNID] = ev.NID
	}
	var missing []int64
	for k, ev := range current {
		if _, set := tl.stateKeys[k]; !set && client[k] != ev {
			missing = append(missing, ev)
		}
	}
	if len(missing) == 0 {
		return state, nil
	}
	extra, err := s.eventsByNID(ctx, pre, missing)
	if err != nil {
		return nil, err
	}
	byKey := map[int64]bool{}
	for _, ev := range extra {
		byKey[ev.StateKeyNID] = true
	}
	out := make([]*storage.Event, 0, len(state)+len(extra))
	for _, ev := range state {
		if !byKey[ev.StateKeyNID] {
			out = append(out, ev)
		}
	}
	return append(out, extra...), nil
}

func copyStateMap(m map[int64]int64) map[int64]int64 {
	out := make(map[int64]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// gapState returns the newest state event per key among those in (since, before).
func (s *Server) gapState(ctx context.Context, roomNID, since, before int64) ([]*storage.Event, error) {
	evs, err := s.db.StateEventsBetween(ctx, roomNID, since, before)
	if err != nil {
		return nil, err
	}
	latest := map[int64]*storage.Event{}
	for _, ev := range evs {
		latest[ev.StateKeyNID] = ev
	}
	out := make([]*storage.Event, 0, len(latest))
	for _, ev := range latest {
		out = append(out, ev)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NID < out[j].NID })
	return out, nil
}

// formatState applies the state filter (including lazy-loading of members: only the senders
// of the timeline and the user themself) and formats the events.
func (s *Server) formatState(ctx context.Context, req syncRequest, roomID string, state []*storage.Event, tl []roomserver.ClientEvent) ([]any, error) {
	f := req.filter.Room.State
	senders := map[string]bool{req.viewer.UserID: true}
	for _, ev := range tl {
		senders[ev.Sender] = true
	}
	var evs []roomserver.ClientEvent
	var err error
	if req.pre != nil {
		evs, err = s.rooms.StateClientEventsFrom(ctx, preReader{s, req.pre}, roomID, state, req.viewer)
	} else {
		evs, err = s.rooms.StateClientEvents(ctx, roomID, state, req.viewer)
	}
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(evs))
	for _, ev := range evs {
		if !f.allows(ev.Type, ev.Sender) {
			continue
		}
		if f.LazyLoadMembers && ev.Type == spec.MRoomMember && ev.StateKey != nil && !senders[*ev.StateKey] {
			continue
		}
		out = append(out, ev)
	}
	return out, nil
}

// summary returns the room summary: heroes and the joined and invited member counts.
func (s *Server) summary(ctx context.Context, roomNID int64, userID string) (map[string]any, error) {
	members, err := s.db.RoomMembers(ctx, roomNID, "")
	if err != nil {
		return nil, err
	}
	return summaryOf(members, userID), nil
}

// summaryOf returns the summary of a room with the given members, ordered by user ID.
func summaryOf(members []storage.Membership, userID string) map[string]any {
	joined, invited := 0, 0
	var heroes, formerHeroes []string
	for _, m := range members {
		switch m.Membership {
		case spec.Join:
			joined++
		case spec.Invite:
			invited++
		}
		if m.UserID == userID {
			continue
		}
		if m.Membership == spec.Join || m.Membership == spec.Invite {
			heroes = append(heroes, m.UserID)
		} else {
			formerHeroes = append(formerHeroes, m.UserID)
		}
	}
	if len(heroes) == 0 {
		heroes = formerHeroes
	}
	if len(heroes) > 5 {
		heroes = heroes[:5]
	}
	if heroes == nil {
		heroes = []string{}
	}
	return map[string]any{"m.heroes": heroes, "m.joined_member_count": joined, "m.invited_member_count": invited}
}

// strippedState returns the invite_state / knock_state of a room: the events a client needs
// to show the invitation, and the user's own membership event.
func (s *Server) strippedState(ctx context.Context, m storage.Membership) (eventList, error) {
	evs, err := s.db.CurrentStateEvents(ctx, m.RoomNID, "")
	if err != nil {
		return eventList{}, err
	}
	out := eventList{Events: []any{}}
	if len(evs) == 0 {
		// A room this server is not in: the invite carries the state its server sent.
		return s.inviteRoomState(ctx, m)
	}
	for _, ev := range evs {
		var f struct {
			Type     string          `json:"type"`
			StateKey string          `json:"state_key"`
			Content  json.RawMessage `json:"content"`
			Sender   string          `json:"sender"`
		}
		if err := json.Unmarshal(ev.JSON, &f); err != nil {
			continue
		}
		switch f.Type {
		case spec.MRoomCreate, spec.MRoomJoinRules, "m.room.name", "m.room.avatar", "m.room.canonical_alias",
			"m.room.encryption", "m.room.topic":
		case spec.MRoomMember:
			if f.StateKey != m.UserID && f.StateKey != invitingSender(evs, m.UserID) {
				continue
			}
		default:
			continue
		}
		out.Events = append(out.Events, map[string]any{"type": f.Type, "state_key": f.StateKey, "content": f.Content, "sender": f.Sender})
	}
	return out, nil
}

// inviteRoomState returns the stripped state another server sent with an invite or in
// answer to a knock (unsigned.invite_room_state or knock_room_state of the stored
// membership event), and that event itself.
func (s *Server) inviteRoomState(ctx context.Context, m storage.Membership) (eventList, error) {
	out := eventList{Events: []any{}}
	evs, err := s.db.EventsByNID(ctx, []int64{m.EventNID})
	if err != nil || len(evs) == 0 {
		return out, err
	}
	var f struct {
		Type     string          `json:"type"`
		StateKey string          `json:"state_key"`
		Content  json.RawMessage `json:"content"`
		Sender   string          `json:"sender"`
		Unsigned struct {
			InviteRoomState []json.RawMessage `json:"invite_room_state"`
			KnockRoomState  []json.RawMessage `json:"knock_room_state"`
		} `json:"unsigned"`
	}
	if err := json.Unmarshal(evs[0].JSON, &f); err != nil {
		return out, nil
	}
	for _, st := range append(f.Unsigned.InviteRoomState, f.Unsigned.KnockRoomState...) {
		out.Events = append(out.Events, st)
	}
	out.Events = append(out.Events, map[string]any{"type": f.Type, "state_key": f.StateKey, "content": f.Content, "sender": f.Sender})
	return out, nil
}

// inviter returns who sent the user's current membership event (the invite).
func (s *Server) inviter(ctx context.Context, m storage.Membership) (string, error) {
	evs, err := s.db.EventsByNID(ctx, []int64{m.EventNID})
	if err != nil || len(evs) == 0 {
		return "", err
	}
	return evs[0].Sender, nil
}

// invitingSender returns who sent the user's current membership event.
func invitingSender(evs []*storage.Event, userID string) string {
	for _, ev := range evs {
		if ev.Type == spec.MRoomMember {
			var f struct {
				StateKey string `json:"state_key"`
			}
			_ = json.Unmarshal(ev.JSON, &f)
			if f.StateKey == userID {
				return ev.Sender
			}
		}
	}
	return ""
}

// leftRoom returns the leave section: the events up to and including the user's leave.
func (s *Server) leftRoom(ctx context.Context, req syncRequest, m storage.Membership, since int64) (*leftRoom, error) {
	from := since
	if req.since == nil {
		from = 0
	}
	tl, firstNID, stateBefore, err := s.timeline(ctx, req, m, from, m.EventNID, true)
	if err != nil {
		return nil, err
	}
	var state []*storage.Event
	if req.stateAfter {
		state, err = s.stateAfter(ctx, nil, m.RoomNID, since, m.EventNID, req.since == nil || req.fullState)
	} else if req.since == nil || req.fullState {
		state, err = s.stateAtStart(ctx, nil, m.RoomNID, stateBefore, m.EventNID)
	} else if tl.Limited {
		state, err = s.gapState(ctx, m.RoomNID, since, firstNID)
	}
	if err != nil {
		return nil, err
	}
	stateEvs, err := s.formatState(ctx, req, m.RoomID, state, tl.Events)
	if err != nil {
		return nil, err
	}
	lr := &leftRoom{State: &eventList{Events: stateEvs}, Timeline: tl, AccountData: eventList{Events: []any{}}}
	if req.stateAfter {
		lr.State, lr.StateAfter = nil, lr.State
		if req.msc4222 {
			lr.StateAfter, lr.MSC4222StateAfter = nil, lr.StateAfter
		}
	}
	return lr, nil
}

package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"sort"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// slidingRoomResult returns a matched room's RoomResult and what the connection then has of
// it, or nil when the connection already has everything (MSC4186 "Room results"):
//  1. a room new to the connection, or whose membership changed, is sent;
//  2. a joined room with events after those sent is sent, with the new events;
//  3. a room whose config grew (timeline_limit, required_state) is sent, with the history
//     or state the larger config adds.
func (s *Server) slidingRoomResult(ctx context.Context, viewer roomserver.Viewer, base *connState, c *roomCandidate, to Token) (*slidingRoom, sentRoom, error) {
	m := c.m
	prev, seen := base.rooms[m.RoomID]
	limit := min(c.config.TimelineLimit, maxTimelineLimit)
	sent := sentRoom{upTo: to.PDU, membership: m.Membership, membershipNID: m.EventNID, timelineLimit: limit,
		stateSig: c.config.RequiredState.signature(), isDM: c.isDM}
	if m.Membership == spec.Leave || m.Membership == spec.Ban {
		sent.upTo = m.EventNID
	}
	if seen {
		// The extensions' deliveries stand (slidingsync_ext.go decides what a room sent
		// whole gets).
		sent.receiptsTo, sent.accountDataTo, sent.typingTo = prev.receiptsTo, prev.accountDataTo, prev.typingTo
	}
	membershipChanged := !seen || prev.membershipNID != m.EventNID
	bump := c.bump
	room := &slidingRoom{Membership: m.Membership, Lists: c.lists, BumpStamp: &bump}
	if c.isDM && (!seen || !prev.isDM) {
		room.IsDM = &c.isDM
	} else if !c.isDM && seen && prev.isDM {
		room.IsDM = &c.isDM
	}
	switch m.Membership {
	case spec.Invite, spec.Knock:
		if !membershipChanged {
			return nil, sentRoom{}, nil
		}
		st, err := s.strippedState(ctx, m)
		if err != nil {
			return nil, sentRoom{}, err
		}
		room.Initial, room.StrippedState = true, st.Events
		if m.Membership == spec.Invite {
			room.InviteState = st.Events
		}
		return room, sent, nil
	}
	// Joined, or left / banned: the room's data up to sent.upTo.
	wasJoined := seen && prev.membership == spec.Join
	if m.Membership != spec.Join && seen && !membershipChanged {
		return nil, sentRoom{}, nil // a left or banned room already sent: nothing new can come
	}
	initial := !wasJoined
	expanded := wasJoined && limit > prev.timelineLimit
	stateGrew := wasJoined && sent.stateSig != prev.stateSig
	newEvents := !seen || sent.upTo > prev.upTo && (m.Membership != spec.Join || c.latest > prev.upTo)
	if !initial && !membershipChanged && !expanded && !stateGrew && !newEvents && !c.readMoved {
		return nil, sentRoom{}, nil
	}
	if !expanded && wasJoined {
		sent.timelineLimit = max(limit, prev.timelineLimit)
	}
	from := int64(0)
	switch {
	case wasJoined && !expanded:
		from = prev.upTo
	case m.Membership != spec.Join && !wasJoined:
		// Never seen joined on this connection: only the membership event itself.
		from = m.EventNID - 1
	}
	room.Initial = initial
	room.ExpandedTimeline = expanded
	evs, err := s.slidingTimeline(ctx, viewer, room, m, from, sent.upTo, limit, base.to.PDU)
	if err != nil {
		return nil, sentRoom{}, err
	}
	since := int64(-1) // the whole state
	if wasJoined && !stateGrew {
		since = prev.upTo
	}
	if m.Membership != spec.Join && !wasJoined {
		since = -2 // no state for a room the user never had on this connection
	}
	var known map[string]bool
	if since >= 0 {
		known = prev.members
	}
	if sent.members, err = s.slidingRoomState(ctx, viewer, room, c, since, sent.upTo, evs, known); err != nil {
		return nil, sentRoom{}, err
	}
	if m.Membership == spec.Join {
		counts, _, err := s.unreadCounts(ctx, syncRequest{viewer: viewer}, m, to)
		if err != nil {
			return nil, sentRoom{}, err
		}
		room.NotificationCount, room.HighlightCount = &counts.NotificationCount, &counts.HighlightCount
	}
	return room, sent, nil
}

// slidingTimeline fills the timeline of a room with up to limit of its newest events in
// (from, upTo], prev_batch, limited and num_live (the events after the connection's last
// response, at liveAfter). It returns the events as stored, for lazy-loaded members.
func (s *Server) slidingTimeline(ctx context.Context, viewer roomserver.Viewer, room *slidingRoom, m storage.Membership, from, upTo int64, limit int, liveAfter int64) ([]*storage.Event, error) {
	if limit == 0 {
		room.PrevBatch = pageToken(storage.StreamSplit(upTo + 1))
		room.Limited = true
		zero := 0
		room.NumLive = &zero
		return nil, nil
	}
	req := syncRequest{viewer: viewer}
	req.filter.Room.Timeline.Limit = &limit
	tl, _, _, err := s.timeline(ctx, req, m, from, upTo, true)
	if err != nil {
		return nil, err
	}
	room.Timeline, room.PrevBatch, room.Limited = tl.Events, tl.PrevBatch, tl.Limited
	// The stored events of the timeline: the lazy members need their senders and targets,
	// and num_live their positions.
	stored, _, err := s.db.RoomEventsAfter(ctx, m.RoomNID, from, upTo, limit)
	if err != nil {
		return nil, err
	}
	live := 0
	shown := map[string]bool{}
	for _, ev := range tl.Events {
		shown[ev.EventID] = true
	}
	var out []*storage.Event
	for _, ev := range stored {
		if !shown[ev.EventID] {
			continue
		}
		out = append(out, ev)
		if liveAfter > 0 && ev.NID > liveAfter {
			live++
		}
	}
	room.NumLive = &live
	return out, nil
}

// slidingRoomState fills required_state and the fields derived from state (name, avatar,
// heroes, member counts): the whole state at upTo matching the config when since is -1, the
// state that changed after since otherwise (none at all for -2); plus, with lazy members,
// the member events of the timeline's senders and targets that the client does not have
// (known, unless changed after since). It returns the users whose member event the client
// then has.
func (s *Server) slidingRoomState(ctx context.Context, viewer roomserver.Viewer, room *slidingRoom, c *roomCandidate, since, upTo int64, timeline []*storage.Event, known map[string]bool) (map[string]bool, error) {
	if since == -2 {
		return nil, nil
	}
	after, err := s.currentStateAt(ctx, c.m.RoomNID, upTo)
	if err != nil {
		return nil, err
	}
	rs := c.config.RequiredState
	match := rs.matcher(viewer.UserID)
	membersChanged := since < 0
	// want selects the state keys whose events are loaded: those the config asks for and the
	// name and avatar; a member key changed is noted without loading its event.
	want := func(k storage.StateKey) bool {
		switch k.Type {
		case "m.room.name", "m.room.avatar":
			return true
		case spec.MRoomMember:
			membersChanged = true
		}
		return match.matches(k.Type, k.StateKey)
	}
	var changed []*storage.Event // wanted state events new to the client (all of them when whole)
	if since < 0 {
		if keys, ok := rs.concreteKeys(viewer.UserID); ok {
			// Only named keys: look them up rather than going through the whole state.
			keys = append(keys, stateSelector{Type: "m.room.name"}, stateSelector{Type: "m.room.avatar"})
			changed, err = s.stateEventsFor(ctx, after, keys)
		} else {
			changed, err = s.stateEventsMatching(ctx, after, nil, want)
		}
	} else {
		var before map[int64]int64
		if before, err = s.currentStateAt(ctx, c.m.RoomNID, since); err == nil {
			changed, err = s.stateEventsMatching(ctx, after, before, want)
		}
	}
	if err != nil {
		return nil, err
	}
	var selected []*storage.Event
	have := map[int64]bool{}
	for _, ev := range changed {
		typ, key := stateKeyOf(ev)
		switch typ {
		case "m.room.name":
			room.Name = stateString(ev, "name")
		case "m.room.avatar":
			room.Avatar = stateString(ev, "url")
		}
		if match.matches(typ, key) {
			selected = append(selected, ev)
			have[ev.NID] = true
		}
	}
	if rs.LazyMembers {
		lazy, err := s.lazyMembers(ctx, after, timeline, have, since, known)
		if err != nil {
			return nil, err
		}
		selected = append(selected, lazy...)
	}
	members, copied := known, false
	for _, ev := range selected {
		if ev.Type != spec.MRoomMember {
			continue
		}
		if _, u := stateKeyOf(ev); !members[u] {
			if !copied {
				// Shared with older states of the connection: copied on write.
				members, copied = maps.Clone(members), true
				if members == nil {
					members = map[string]bool{}
				}
			}
			members[u] = true
		}
	}
	for _, ev := range timeline {
		membersChanged = membersChanged || ev.Type == spec.MRoomMember
	}
	if len(selected) > 0 {
		evs, err := s.rooms.StateClientEvents(ctx, c.m.RoomID, selected, viewer)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			room.RequiredState = append(room.RequiredState, ev)
		}
	}
	if membersChanged {
		if err := s.slidingSummary(ctx, viewer, room, c.m.RoomNID, after); err != nil {
			return nil, err
		}
	}
	return members, nil
}

// stateEventsFor returns the events of the state map for the given keys.
func (s *Server) stateEventsFor(ctx context.Context, state map[int64]int64, keys []stateSelector) ([]*storage.Event, error) {
	var nids []int64
	seen := map[int64]bool{}
	for _, k := range keys {
		knid, err := s.db.LookupStateKeyNID(ctx, storage.StateKey{Type: k.Type, StateKey: k.StateKey})
		if errors.Is(err, storage.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		if ev, ok := state[knid]; ok && !seen[ev] {
			seen[ev] = true
			nids = append(nids, ev)
		}
	}
	return s.db.EventsByNID(ctx, nids)
}

// lazyMembers returns the current member events of the timeline's senders and of the
// targets of its member events, except those in have and those of known users that did not
// change after since.
func (s *Server) lazyMembers(ctx context.Context, state map[int64]int64, timeline []*storage.Event, have map[int64]bool, since int64, known map[string]bool) ([]*storage.Event, error) {
	var keys []stateSelector
	users := map[string]bool{}
	for _, ev := range timeline {
		users[ev.Sender] = true
		if ev.Type == spec.MRoomMember {
			if _, key := stateKeyOf(ev); key != "" {
				users[key] = true
			}
		}
	}
	for u := range users {
		keys = append(keys, stateSelector{Type: spec.MRoomMember, StateKey: u})
	}
	evs, err := s.stateEventsFor(ctx, state, keys)
	if err != nil {
		return nil, err
	}
	out := evs[:0]
	for _, ev := range evs {
		if _, u := stateKeyOf(ev); have[ev.NID] || (known[u] && ev.NID <= since) {
			continue
		}
		out = append(out, ev)
	}
	return out, nil
}

// slidingSummary fills heroes (when the room has no name) and the member counts.
func (s *Server) slidingSummary(ctx context.Context, viewer roomserver.Viewer, room *slidingRoom, roomNID int64, state map[int64]int64) error {
	var joined, invited int
	var heroes []string
	if room.Membership == spec.Join {
		sum, err := s.summary(ctx, roomNID, viewer.UserID)
		if err != nil {
			return err
		}
		joined, _ = sum["m.joined_member_count"].(int)
		invited, _ = sum["m.invited_member_count"].(int)
		heroes, _ = sum["m.heroes"].([]string)
	} else {
		// Not joined: the members as they were at the user's membership event (the state
		// the room is sent with), not those who came after the user left.
		var err error
		if joined, invited, heroes, err = s.summaryIn(ctx, state, viewer.UserID); err != nil {
			return err
		}
	}
	room.JoinedCount, room.InvitedCount = &joined, &invited
	if room.Name != nil && string(room.Name) != "null" {
		return nil
	}
	room.Heroes = []slidingHero{}
	for _, h := range heroes {
		hero := slidingHero{UserID: h}
		content := s.rooms.StateContent(ctx, state, storage.StateKey{Type: spec.MRoomMember, StateKey: h})
		hero.DisplayName, _ = content["displayname"].(string)
		hero.AvatarURL, _ = content["avatar_url"].(string)
		room.Heroes = append(room.Heroes, hero)
	}
	return nil
}

// summaryIn returns the member counts and heroes of a state map, as summary does for the
// current members: joined and invited users first, else former members; at most five.
func (s *Server) summaryIn(ctx context.Context, state map[int64]int64, userID string) (joined, invited int, heroes []string, err error) {
	evs, err := s.stateEventsMatching(ctx, state, nil, func(k storage.StateKey) bool { return k.Type == spec.MRoomMember })
	if err != nil {
		return 0, 0, nil, err
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].NID < evs[j].NID })
	var former []string
	for _, ev := range evs {
		_, u := stateKeyOf(ev)
		var f struct {
			Content struct {
				Membership string `json:"membership"`
			} `json:"content"`
		}
		_ = json.Unmarshal(ev.JSON, &f)
		switch f.Content.Membership {
		case spec.Join:
			joined++
		case spec.Invite:
			invited++
		}
		switch {
		case u == userID:
		case f.Content.Membership == spec.Join || f.Content.Membership == spec.Invite:
			heroes = append(heroes, u)
		default:
			former = append(former, u)
		}
	}
	if len(heroes) == 0 {
		heroes = former
	}
	return joined, invited, heroes[:min(len(heroes), 5)], nil
}

// stateEventsMatching returns the events of the state map after that are not in before (all
// of after with nil) and whose (type, state key) want accepts. The keys are resolved through
// the roomserver's cache: only the events wanted are loaded.
func (s *Server) stateEventsMatching(ctx context.Context, after, before map[int64]int64, want func(storage.StateKey) bool) ([]*storage.Event, error) {
	var nids []int64
	for knid, ev := range after {
		if before != nil && before[knid] == ev {
			continue
		}
		key, err := s.rooms.StateKey(ctx, knid)
		if err != nil {
			return nil, err
		}
		if want(key) {
			nids = append(nids, ev)
		}
	}
	s.sliding.mu.Lock()
	s.sliding.stateLoads += int64(len(nids))
	s.sliding.mu.Unlock()
	if len(nids) == 0 {
		return nil, nil
	}
	return s.db.EventsByNID(ctx, nids)
}

// stateKeyOf returns the type and state key of a state event.
func stateKeyOf(ev *storage.Event) (string, string) {
	var f struct {
		StateKey string `json:"state_key"`
	}
	_ = json.Unmarshal(ev.JSON, &f)
	return ev.Type, f.StateKey
}

// stateString returns a string field of a state event's content as JSON, or null when the
// content has none (a name or avatar removed).
func stateString(ev *storage.Event, field string) json.RawMessage {
	var f struct {
		Content map[string]any `json:"content"`
	}
	_ = json.Unmarshal(ev.JSON, &f)
	if v, ok := f.Content[field].(string); ok && v != "" {
		b, _ := json.Marshal(v)
		return b
	}
	return json.RawMessage("null")
}

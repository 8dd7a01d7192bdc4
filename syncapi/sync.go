package syncapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/pushrules"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

type eventList struct {
	Events []any `json:"events"`
}

type timeline struct {
	Events    []roomserver.ClientEvent `json:"events"`
	Limited   bool                     `json:"limited"`
	PrevBatch string                   `json:"prev_batch,omitempty"`

	hasMember bool // a membership event was among the events, before any filter
	// stateKeys are the state keys the (filtered) timeline's state events set, with the last
	// event setting each.
	stateKeys map[int64]int64
	// remote: an event from another server was among the events, before any filter (only
	// those can bring state resolution or state learnt outside the timeline).
	remote bool
}

type unreadCounts struct {
	HighlightCount    int `json:"highlight_count"`
	NotificationCount int `json:"notification_count"`
}

type joinedRoom struct {
	Summary map[string]any `json:"summary"`
	// State is the state before the timeline; StateAfter, instead of it when the client asks
	// with use_state_after, the state at the end of the timeline (stateAfter).
	State      *eventList `json:"state,omitempty"`
	StateAfter *eventList `json:"state_after,omitempty"`
	// MSC4222StateAfter is StateAfter under MSC4222's unstable name, for clients that ask with
	// org.matrix.msc4222.use_state_after (matrix-js-sdk does).
	MSC4222StateAfter   *eventList   `json:"org.matrix.msc4222.state_after,omitempty"`
	Timeline            timeline     `json:"timeline"`
	Ephemeral           eventList    `json:"ephemeral"`
	AccountData         eventList    `json:"account_data"`
	UnreadNotifications unreadCounts `json:"unread_notifications"`
	// UnreadThreadNotifications is set when the filter asks for counts per thread.
	UnreadThreadNotifications map[string]unreadCounts `json:"unread_thread_notifications,omitempty"`
	// Sticky is the room's sticky events (MSC4354) under the unstable name; stickySection.
	Sticky *eventList `json:"msc4354_sticky,omitempty"`

	// membersChanged records a membership change in the room's part of the response, before
	// any filter: it decides the summary and whether device lists need looking up.
	membersChanged bool
}

// strippedState is an invited or knocked room: one of the two is set (pointers, so that the
// other is left out rather than written as {"events": null}).
type strippedState struct {
	InviteState *eventList `json:"invite_state,omitempty"`
	KnockState  *eventList `json:"knock_state,omitempty"`
}

type leftRoom struct {
	State             *eventList `json:"state,omitempty"`
	StateAfter        *eventList `json:"state_after,omitempty"`
	MSC4222StateAfter *eventList `json:"org.matrix.msc4222.state_after,omitempty"`
	Timeline          timeline   `json:"timeline"`
	AccountData       eventList  `json:"account_data"`
}

type syncRooms struct {
	Join   map[string]*joinedRoom    `json:"join"`
	Invite map[string]*strippedState `json:"invite"`
	Leave  map[string]*leftRoom      `json:"leave"`
	Knock  map[string]*strippedState `json:"knock"`
}

type deviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

type syncResponse struct {
	NextBatch                    string         `json:"next_batch"`
	Rooms                        syncRooms      `json:"rooms"`
	AccountData                  eventList      `json:"account_data"`
	Presence                     eventList      `json:"presence"`
	ToDevice                     eventList      `json:"to_device"`
	DeviceLists                  deviceLists    `json:"device_lists"`
	DeviceOneTimeKeysCount       map[string]int `json:"device_one_time_keys_count"`
	DeviceUnusedFallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`
}

// empty reports whether the response has nothing for the client (and so a long-poll waits).
func (r *syncResponse) empty() bool {
	return len(r.Rooms.Join) == 0 && len(r.Rooms.Invite) == 0 && len(r.Rooms.Leave) == 0 &&
		len(r.Rooms.Knock) == 0 && len(r.AccountData.Events) == 0 && len(r.Presence.Events) == 0 &&
		len(r.ToDevice.Events) == 0 && len(r.DeviceLists.Changed) == 0 && len(r.DeviceLists.Left) == 0
}

// syncRequest is one /sync call's parameters.
type syncRequest struct {
	viewer    roomserver.Viewer
	since     *Token
	filter    Filter
	fullState bool
	// stateAfter: the client asked for use_state_after (state_after instead of state);
	// msc4222: under MSC4222's unstable names.
	stateAfter, msc4222 bool
	// pre holds what an initial or full_state sync read ahead for all joined rooms (nil:
	// none, each room reads its own).
	pre *prefetch
	// stickyRooms are, for an initial or full_state sync, the rooms with events still
	// sticky (MSC4354), read once for all (nil: each room asks).
	stickyRooms map[int64]bool
}

// handleSync handles GET /sync. An incremental sync with nothing new waits up to timeout
// milliseconds for the notifier to report a change for this user.
func (s *Server) handleSync(r *http.Request) (any, error) {
	dev := httputil.Device(r.Context())
	q := r.URL.Query()
	req := syncRequest{fullState: q.Get("full_state") == "true", stateAfter: q.Get("use_state_after") == "true"}
	if !req.stateAfter && q.Get("org.matrix.msc4222.use_state_after") == "true" {
		req.stateAfter, req.msc4222 = true, true
	}
	if since := q.Get("since"); since != "" {
		tok, err := ParseToken(since)
		if err != nil {
			return nil, err
		}
		req.since = &tok
	}
	var err error
	if req.filter, err = loadFilter(r.Context(), s.db, dev.UserID, q.Get("filter")); err != nil {
		return nil, err
	}
	timeout := time.Duration(0)
	if t := q.Get("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil || ms < 0 {
			return nil, spec.InvalidParam("timeout must be a non-negative integer")
		}
		timeout = min(time.Duration(ms)*time.Millisecond, s.maxTimeout)
	}
	if setPresence := q.Get("set_presence"); !setPresenceParam(setPresence) {
		return nil, spec.InvalidParam("set_presence must be online, unavailable or offline")
	} else if s.presence != nil {
		// The user counts as syncing (so not offline) until this request ends.
		defer s.presence.Syncing(r.Context(), dev.UserID, setPresence)()
	}
	if err := s.notifier.CatchUp(r.Context()); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		// Read each time round: a change of the ignore list applies at once.
		req.viewer = s.viewer(r.Context(), dev)
		ch, pos, stop := s.notifier.listen(dev.UserID)
		var resp *syncResponse
		var err error
		if werr := s.build.do(r.Context(), func() { resp, err = s.buildSync(r.Context(), req, pos) }); werr != nil {
			err = werr
		}
		if err != nil {
			stop()
			return nil, err
		}
		remaining := time.Until(deadline)
		if req.since == nil || req.fullState || !resp.empty() || remaining <= 0 {
			stop()
			return resp, nil
		}
		// Nothing new for this user: wait for a change, then look again from the same since.
		woken := s.notifier.wait(r.Context(), ch, remaining)
		stop()
		if !woken {
			// Timed out, or the client went away (then nobody reads this answer).
			return resp, nil
		}
	}
}

// buildSync assembles the response for changes after req.since up to the positions to.
// maxScannedEvents bounds the events stream range an incremental sync scans for the rooms
// with new events (see buildSync).
const maxScannedEvents = 20000

func (s *Server) buildSync(ctx context.Context, req syncRequest, to Token) (*syncResponse, error) {
	userID := req.viewer.UserID
	memberships, err := s.db.AllMemberships(ctx, userID)
	if err != nil {
		return nil, err
	}
	// A membership committed after the notifier's position was read is included now rather
	// than half-seen: every event up to it is committed (the writer commits in order).
	for _, m := range memberships {
		to.PDU = max(to.PDU, m.EventNID)
	}
	since := Token{}
	if req.since != nil {
		since = *req.since
	}
	resp := &syncResponse{
		NextBatch: to.String(),
		Rooms: syncRooms{
			Join: map[string]*joinedRoom{}, Invite: map[string]*strippedState{},
			Leave: map[string]*leftRoom{}, Knock: map[string]*strippedState{},
		},
		AccountData:            eventList{Events: []any{}},
		Presence:               eventList{Events: []any{}},
		ToDevice:               eventList{Events: []any{}},
		DeviceLists:            deviceLists{Changed: []string{}, Left: []string{}},
		DeviceOneTimeKeysCount: map[string]int{"signed_curve25519": 0},
	}
	roomData, err := s.accountData(ctx, userID, since.AccountData, to.AccountData, req.filter, resp)
	if err != nil {
		return nil, err
	}
	if req.since == nil && req.filter.AccountData.allows(pushrules.AccountDataType, "") {
		if ev := defaultPushRules(userID, resp.AccountData.Events); ev != nil {
			resp.AccountData.Events = append(resp.AccountData.Events, ev)
		}
	}
	// An incremental sync looks at the rooms with new events only (one range scan of the
	// events stream), not at every joined room: a no-op sync costs the same for a user in a
	// thousand rooms as in one. After a long absence the range is long, and asking each
	// joined room is cheaper.
	var active map[int64]int64
	if req.since != nil && !req.fullState && to.PDU-since.PDU <= maxScannedEvents {
		if active, err = s.db.RoomsWithEvents(ctx, since.PDU, to.PDU); err != nil {
			return nil, err
		}
	}
	if req.since == nil || req.fullState {
		if req.stickyRooms, err = s.db.RoomsWithSticky(ctx, to.PDU, time.Now().UnixMilli()); err != nil {
			return nil, err
		}
	}
	invites := s.invitePolicy(req.viewer)
	for i, m := range memberships {
		if (req.since == nil || req.fullState) && i%prefetchRooms == 0 {
			next, err := s.prefetchJoined(ctx, req, memberships[i:min(i+prefetchRooms, len(memberships))], to.PDU)
			if err != nil {
				return nil, err
			}
			req.pre = req.pre.then(next)
		}
		if m.Forgotten || !allowsRoom(req.filter.Room.Rooms, req.filter.Room.NotRooms, m.RoomID) {
			continue
		}
		changed := req.since == nil || m.EventNID > since.PDU
		switch m.Membership {
		case spec.Join:
			var jr *joinedRoom
			if _, hasEvents := active[m.RoomNID]; active == nil || changed || hasEvents {
				if jr, err = s.joinedRoom(ctx, req, m, since.PDU, to.PDU); err != nil {
					return nil, err
				}
				req.pre.done(m.RoomNID)
			}
			if ad := roomData[m.RoomID]; len(ad) > 0 {
				if jr == nil {
					jr, err = s.emptyJoinedRoom(ctx, m, to.PDU, req.stateAfter, req.msc4222)
					if err != nil {
						return nil, err
					}
				}
				jr.AccountData.Events = ad
			}
			if jr != nil {
				resp.Rooms.Join[m.RoomID] = jr
			}
		case spec.Invite, spec.Knock:
			if !changed {
				continue
			}
			if m.Membership == spec.Invite {
				if hide, err := invites.hidden(ctx, m); err != nil {
					return nil, err
				} else if hide {
					continue // blocked, ignored or from an ignored user (they stay in the database)
				}
			}
			st, err := s.strippedState(ctx, m)
			if err != nil {
				return nil, err
			}
			if m.Membership == spec.Invite {
				resp.Rooms.Invite[m.RoomID] = &strippedState{InviteState: &st}
			} else {
				resp.Rooms.Knock[m.RoomID] = &strippedState{KnockState: &st}
			}
		case spec.Leave, spec.Ban:
			if (req.since == nil && !req.filter.Room.IncludeLeave) || !changed {
				continue
			}
			lr, err := s.leftRoom(ctx, req, m, since.PDU)
			if err != nil {
				return nil, err
			}
			if lr != nil {
				resp.Rooms.Leave[m.RoomID] = lr
			}
		}
	}
	if req.since != nil {
		if err := s.purgedRoomLeaves(ctx, req, userID, since.PDU, to.PDU, resp); err != nil {
			return nil, err
		}
	}
	// The other streams, each in its own file.
	for _, section := range []func(context.Context, syncRequest, Token, Token, *syncResponse, []storage.Membership) error{
		s.syncEphemeral, s.syncToDevice, s.syncDeviceLists, s.syncPresence, s.syncUnread,
	} {
		if err := section(ctx, req, since, to, resp, memberships); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// unstableNames moves state_after to MSC4222's unstable name when the client asked that way.
func (jr *joinedRoom) unstableNames(msc4222 bool) {
	if msc4222 {
		jr.StateAfter, jr.MSC4222StateAfter = nil, jr.StateAfter
	}
}

// roomEntry returns the join section of a room in resp, creating an empty one (no timeline
// events) when the room had no other change, for sections such as receipts and typing.
func (s *Server) roomEntry(ctx context.Context, req syncRequest, resp *syncResponse, m storage.Membership, to Token) (*joinedRoom, error) {
	if jr, ok := resp.Rooms.Join[m.RoomID]; ok {
		return jr, nil
	}
	jr, err := s.emptyJoinedRoom(ctx, m, to.PDU, req.stateAfter, req.msc4222)
	if err != nil {
		return nil, err
	}
	resp.Rooms.Join[m.RoomID] = jr
	return jr, nil
}

// defaultPushRules returns the m.push_rules event of the server-default rules for userID,
// or nil when events (the global account data of a first sync) hold stored ones. A user who
// never changed a rule has none stored, yet clients (Element among them) read the rules in
// force from the account data of their first sync, as Synapse serves them: push.md's rules
// apply to every user whether or not they edited them.
func defaultPushRules(userID string, events []any) map[string]any {
	for _, ev := range events {
		if ev.(map[string]any)["type"] == pushrules.AccountDataType {
			return nil
		}
	}
	rules, _ := pushrules.Parse(userID, "") // no stored content: the defaults, no error
	return map[string]any{"type": pushrules.AccountDataType, "content": rules}
}

// accountData fills the global account data and returns the per-room entries by room.
func (s *Server) accountData(ctx context.Context, userID string, since, to int64, f Filter, resp *syncResponse) (map[string][]any, error) {
	if since >= to {
		return nil, nil
	}
	entries, err := s.db.AccountDataSince(ctx, userID, since, to)
	if err != nil {
		return nil, err
	}
	byRoom := map[string][]any{}
	for _, e := range entries {
		ev := map[string]any{"type": e.Type, "content": json.RawMessage(e.Content)}
		if e.RoomID == "" {
			if f.AccountData.allows(e.Type, "") {
				resp.AccountData.Events = append(resp.AccountData.Events, ev)
			}
		} else if f.Room.AccountData.allows(e.Type, "") {
			byRoom[e.RoomID] = append(byRoom[e.RoomID], ev)
		}
	}
	return byRoom, nil
}

// purgedRoomLeaves adds to an incremental sync the rooms deleted with purge (the admin API)
// that the user left, by their leave or kick, since the token: the room's events are gone, so
// the leave section carries just that membership event.
func (s *Server) purgedRoomLeaves(ctx context.Context, req syncRequest, userID string, since, to int64, resp *syncResponse) error {
	leaves, err := s.db.PurgedLeaves(ctx, userID, since, to)
	if err != nil {
		return err
	}
	for _, l := range leaves {
		if _, ok := resp.Rooms.Leave[l.RoomID]; ok || !allowsRoom(req.filter.Room.Rooms, req.filter.Room.NotRooms, l.RoomID) {
			continue
		}
		var ev roomserver.ClientEvent
		if err := json.Unmarshal(l.EventJSON, &ev); err != nil {
			s.log.Warn("unreadable leave of a purged room", "room_id", l.RoomID, "user_id", userID, "err", err)
			continue
		}
		lr := &leftRoom{Timeline: timeline{Events: []roomserver.ClientEvent{ev}}, AccountData: eventList{Events: []any{}}}
		if req.stateAfter {
			lr.StateAfter = &eventList{Events: []any{}}
			if req.msc4222 {
				lr.StateAfter, lr.MSC4222StateAfter = nil, lr.StateAfter
			}
		} else {
			lr.State = &eventList{Events: []any{}}
		}
		resp.Rooms.Leave[l.RoomID] = lr
	}
	return nil
}

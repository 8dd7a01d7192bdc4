package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// handleMembers handles GET /rooms/{roomId}/members with the membership and not_membership
// filters. Members are those of the current state, or of the state when the user left.
func (s *Server) handleMembers(r *http.Request) (any, error) {
	ctx := r.Context()
	dev := httputil.Device(ctx)
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	want, notWant := q.Get("membership"), q.Get("not_membership")
	read := func() ([]*storage.Event, error) {
		if at := q.Get("at"); at != "" {
			return s.membersAt(ctx, roomID, dev.UserID, at)
		}
		return s.rooms.VisibleState(ctx, roomID, dev.UserID)
	}
	// Read once before waiting for a partial state's resync, so that only a user who may
	// see the members waits (then read again).
	state, err := read()
	if err != nil {
		return nil, err
	}
	if partial, perr := s.rooms.IsPartialState(ctx, roomID); perr == nil && partial {
		s.waitFullState(ctx, roomID)
		if state, err = read(); err != nil {
			return nil, err
		}
	}
	var members []*storage.Event
	for _, ev := range state {
		if ev.Type != spec.MRoomMember {
			continue
		}
		m := membershipOf(ev)
		if (want != "" && m != want) || (notWant != "" && m == notWant) {
			continue
		}
		members = append(members, ev)
	}
	chunk, err := s.rooms.StateClientEvents(ctx, roomID, members, roomserver.Viewer{UserID: dev.UserID, DeviceID: dev.DeviceID})
	if err != nil {
		return nil, err
	}
	if chunk == nil {
		chunk = []roomserver.ClientEvent{}
	}
	return map[string]any{"chunk": chunk}, nil
}

// membersAt returns the room state at the point in time at (a pagination token), for a
// user who may see the room then. rooms.yaml: "The point in time (pagination token) to
// return members for in the room. This token can be obtained from a prev_batch token
// returned for each room by the sync API."
//
// A /sync since-token (next_batch) and a prev_batch (the point just before a timeline, split
// by stream position) stand between two positions of the event stream: the state is the
// room's state once the events before the point were in, what a client synced up to it
// holds, so the first event of a timeline is not counted at its prev_batch. A point before
// the first event this server holds of the room (a token from before the server joined it
// over federation, whose earlier events it holds only as state) gets the state before that
// event. A topological /messages token stands just before its event: the state before it.
// For a user who left, a stream point after their leave is taken at the leave.
func (s *Server) membersAt(ctx context.Context, roomID, userID, at string) ([]*storage.Event, error) {
	vis, room, err := s.memberVisibility(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	var ev *storage.Event
	var state map[int64]int64
	if p, ok := parsePageToken(at); ok && !p.Split() {
		ev, state, err = s.stateBeforeTopo(ctx, room.NID, p.Late)
	} else {
		var point int64
		if ok {
			point = streamPointOf(p)
		} else if tok, err := ParseToken(at); err == nil {
			point = tok.PDU
		} else {
			return nil, spec.InvalidParam("invalid pagination token")
		}
		if m := vis.membership; m.Membership == spec.Leave || m.Membership == spec.Ban {
			point = min(point, m.EventNID)
		}
		ev, state, err = s.stateAtStream(ctx, room.NID, point)
	}
	if err != nil || ev == nil {
		return nil, err // no event: the room had no state then
	}
	if ok, err := vis.canSee(ctx, ev); err != nil || !ok {
		return nil, spec.Forbidden("you may not see the room at that point")
	}
	nids := make([]int64, 0, len(state))
	for _, nid := range state {
		nids = append(nids, nid)
	}
	return s.db.EventsByNID(ctx, nids)
}

// stateAtStream returns the room's state after its events up to stream position point, with
// the event that decides whether the user may see it: the last event up to the point, or
// when there is none the first one after it, with the state before it (nil when the room
// has no event).
func (s *Server) stateAtStream(ctx context.Context, roomNID, point int64) (*storage.Event, map[int64]int64, error) {
	ev, err := s.db.LastRoomEvent(ctx, roomNID, point)
	if err == nil {
		state, err := s.stateOnceCommitted(ctx, ev)
		return ev, state, err
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, nil, err
	}
	if ev, err = s.db.NextRoomEvent(ctx, roomNID, point); errors.Is(err, storage.ErrNotFound) {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, err
	}
	state, err := s.rooms.StateAt(ctx, ev.StateBeforeNID)
	return ev, state, err
}

// stateBeforeTopo returns the state before the event at topological position pos (the room's
// latest state when pos is after every event), with that event.
func (s *Server) stateBeforeTopo(ctx context.Context, roomNID int64, pos storage.TopoPos) (*storage.Event, map[int64]int64, error) {
	evs, err := s.db.RoomEventsTopo(ctx, roomNID, pos, nil, false, 1)
	if err != nil {
		return nil, nil, err
	}
	if len(evs) == 0 {
		return s.stateAtStream(ctx, roomNID, math.MaxInt64)
	}
	state, err := s.rooms.StateAt(ctx, evs[0].StateBeforeNID)
	return evs[0], state, err
}

// handleJoinedMembers handles GET /rooms/{roomId}/joined_members.
func (s *Server) handleJoinedMembers(r *http.Request) (any, error) {
	ctx := r.Context()
	dev := httputil.Device(ctx)
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	if m, err := s.rooms.Membership(ctx, roomID, dev.UserID); err != nil || m != spec.Join {
		return nil, spec.Forbidden("you are not a member of this room")
	}
	s.waitFullState(ctx, roomID)
	room, err := s.db.Room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	evs, err := s.db.CurrentStateEvents(ctx, room.NID, spec.MRoomMember)
	if err != nil {
		return nil, err
	}
	joined := map[string]any{}
	for _, ev := range evs {
		var f struct {
			StateKey string `json:"state_key"`
			Content  struct {
				Membership  string `json:"membership"`
				DisplayName string `json:"displayname"`
				AvatarURL   string `json:"avatar_url"`
			} `json:"content"`
		}
		if json.Unmarshal(ev.JSON, &f) != nil || f.Content.Membership != spec.Join {
			continue
		}
		entry := map[string]string{}
		if f.Content.DisplayName != "" {
			entry["display_name"] = f.Content.DisplayName
		}
		if f.Content.AvatarURL != "" {
			entry["avatar_url"] = f.Content.AvatarURL
		}
		joined[f.StateKey] = entry
	}
	return map[string]any{"joined": joined}, nil
}

// membersWait bounds how long /members and /joined_members wait for the resync of a room
// joined with partial state; after it they answer from the members known so far.
const membersWait = 60 * time.Second

// waitFullState waits, for at most membersWait, until the state of roomID is no longer
// partial (MSC3902: the member list of a room joined with partial state is complete only
// after its resync). A failure to tell is logged and the answer goes on.
func (s *Server) waitFullState(ctx context.Context, roomID string) {
	if _, err := s.rooms.WaitFullState(ctx, roomID, membersWait); err != nil {
		s.log.Error("wait for the full state of a room", "room_id", roomID, "err", err)
	}
}

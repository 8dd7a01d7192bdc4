package syncapi

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// visibility decides which events of one room a user may see, following the spec's
// "History visibility" rules, with the state before each event looked up once per snapshot.
type visibility struct {
	s          *Server
	userID     string
	membership storage.Membership // current membership; Membership "" when never in the room
	snapshots  map[int64]snapshotView
	pre        *prefetch // events read ahead (an initial sync), or nil
}

type snapshotView struct {
	historyVisibility string
	membership        string
}

func (s *Server) newVisibility(ctx context.Context, roomID, userID string) (*visibility, *storage.Room, error) {
	room, err := s.db.Room(ctx, roomID)
	if err != nil {
		return nil, nil, spec.Forbidden("you are not a member of this room")
	}
	v := &visibility{s: s, userID: userID, snapshots: map[int64]snapshotView{}}
	ms, err := s.db.RoomMembers(ctx, room.NID, "")
	if err != nil {
		return nil, nil, err
	}
	for _, m := range ms {
		if m.UserID == userID {
			v.membership = m
		}
	}
	return v, room, nil
}

// memberVisibility is newVisibility for the endpoints that need the user to be or have been
// in the room: others get M_FORBIDDEN, and so does a user who forgot the room (the forget
// endpoint: "After this API is called, however, a user will no longer be able to retrieve
// history for this room").
func (s *Server) memberVisibility(ctx context.Context, roomID, userID string) (*visibility, *storage.Room, error) {
	vis, room, err := s.newVisibility(ctx, roomID, userID)
	if err != nil {
		return nil, nil, err
	}
	if vis.membership.Membership == "" || vis.membership.Forgotten {
		return nil, nil, spec.Forbidden("you are not a member of this room")
	}
	return vis, room, nil
}

func (v *visibility) view(ctx context.Context, snapshotNID int64) (snapshotView, error) {
	if sv, ok := v.snapshots[snapshotNID]; ok {
		return sv, nil
	}
	state, err := v.s.rooms.StateAt(ctx, snapshotNID)
	if err != nil {
		return snapshotView{}, err
	}
	var sv snapshotView
	sv.historyVisibility, _ = v.s.stateContent(ctx, v.pre, state, storage.StateKey{Type: spec.MRoomHistoryVisibility})["history_visibility"].(string)
	if sv.historyVisibility == "" {
		sv.historyVisibility = "shared"
	}
	sv.membership, _ = v.s.stateContent(ctx, v.pre, state, storage.StateKey{Type: spec.MRoomMember, StateKey: v.userID})["membership"].(string)
	v.snapshots[snapshotNID] = sv
	return sv, nil
}

// canSee reports whether the user may see ev.
//  1. world_readable: everyone may;
//  2. the user was joined at the event: they may;
//  3. shared: members may see it once they join, as long as they are (or were, up to their leave);
//  4. invited: an invited user may;
//  5. otherwise no. A user always sees their own membership events.
//
// A user who forgot the room is treated as never having been in it: they see world_readable
// events only (the forget endpoint: they "will no longer be able to retrieve history").
func (v *visibility) canSee(ctx context.Context, ev *storage.Event) (bool, error) {
	if v.membership.Forgotten {
		sv, err := v.view(ctx, ev.StateBeforeNID)
		return err == nil && sv.historyVisibility == "world_readable", err
	}
	if ev.Type == spec.MRoomMember && ev.Sender == v.userID {
		return true, nil
	}
	if ev.NID == v.membership.EventNID {
		return true, nil
	}
	sv, err := v.view(ctx, ev.StateBeforeNID)
	if err != nil {
		return false, err
	}
	switch {
	case sv.historyVisibility == "world_readable":
		return true, nil
	case sv.membership == spec.Join:
		return true, nil
	case sv.historyVisibility == "shared":
		switch v.membership.Membership {
		case spec.Join:
			return true, nil
		case spec.Leave, spec.Ban:
			return ev.NID < v.membership.EventNID, nil
		}
	case sv.historyVisibility == "invited":
		return sv.membership == spec.Invite, nil
	}
	return false, nil
}

// filter keeps the events the user may see.
func (v *visibility) filter(ctx context.Context, evs []*storage.Event) ([]*storage.Event, error) {
	out := evs[:0:0]
	for _, ev := range evs {
		ok, err := v.canSee(ctx, ev)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, ev)
		}
	}
	return out, nil
}

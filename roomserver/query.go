package roomserver

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// VisibleState returns the room state a user may see: the current state while joined (or
// when the room is world-readable), and the state as it was when they left or were banned.
// Others get M_FORBIDDEN, as the spec's GET /state says.
func (s *Server) VisibleState(ctx context.Context, roomID, userID string) ([]*storage.Event, error) {
	r, err := s.lockRoom(ctx, roomID)
	if errors.Is(err, errUnknownRoom) {
		return nil, spec.Forbidden("you are not a member of this room")
	} else if err != nil {
		return nil, err
	}
	membership, nid, state := r.members[userID], r.nid, r.state
	r.unlock()
	if membership == spec.Join {
		return s.db.CurrentStateEvents(ctx, nid, "")
	}
	if s.StateContent(ctx, state, storage.StateKey{Type: spec.MRoomHistoryVisibility})["history_visibility"] == "world_readable" {
		return s.db.CurrentStateEvents(ctx, nid, "")
	}
	if membership != spec.Leave && membership != spec.Ban {
		return nil, spec.Forbidden("you are not a member of this room")
	}
	knid, err := s.lookupStateKeyNID(ctx, storage.StateKey{Type: spec.MRoomMember, StateKey: userID})
	if err != nil {
		return nil, err
	}
	memberEvs, err := s.db.EventsByNID(ctx, []int64{state[knid]})
	if err != nil || len(memberEvs) == 0 {
		return nil, spec.Forbidden("you are not a member of this room")
	}
	before, err := s.StateAt(ctx, memberEvs[0].StateBeforeNID)
	if err != nil {
		return nil, err
	}
	if m, _ := s.membershipIn(ctx, before, userID); m != spec.Join && m != spec.Invite {
		return nil, spec.Forbidden("you were never a member of this room")
	}
	nids := make([]int64, 0, len(before))
	for k, ev := range before {
		if k != knid {
			nids = append(nids, ev)
		}
	}
	evs, err := s.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	return append(evs, memberEvs[0]), nil
}

// membershipIn returns userID's membership in a state map.
func (s *Server) membershipIn(ctx context.Context, state map[int64]int64, userID string) (string, error) {
	m, _ := s.StateContent(ctx, state, storage.StateKey{Type: spec.MRoomMember, StateKey: userID})["membership"].(string)
	return m, nil
}

// StateContent returns the content of the event for key in a state map (nil when absent).
func (s *Server) StateContent(ctx context.Context, state map[int64]int64, key storage.StateKey) map[string]any {
	knid, err := s.lookupStateKeyNID(ctx, key)
	if err != nil || knid == 0 {
		return nil
	}
	evNID, ok := state[knid]
	if !ok {
		return nil
	}
	evs, err := s.db.EventsByNID(ctx, []int64{evNID})
	if err != nil || len(evs) == 0 {
		return nil
	}
	var c struct {
		Content map[string]any `json:"content"`
	}
	_ = json.Unmarshal(evs[0].JSON, &c)
	return c.Content
}

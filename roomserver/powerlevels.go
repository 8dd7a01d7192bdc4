package roomserver

import (
	"context"
	"encoding/json"
	"math"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// powerLevels returns the room's current power levels (the spec's defaults when the room
// has no m.room.power_levels event, where the creator has 100).
func (s *Server) powerLevels(ctx context.Context, r *room) (*gomatrixserverlib.PowerLevelContent, error) {
	evs, err := s.stateEvents(ctx, r.version, r.state, []storage.StateKey{{Type: spec.MRoomPowerLevels}, {Type: spec.MRoomCreate}})
	if err != nil {
		return nil, err
	}
	var pl gomatrixserverlib.PowerLevelContent
	for _, ev := range evs {
		if ev.Type() == spec.MRoomPowerLevels {
			if err := r.version.ParsePowerLevels(ev.Content(), &pl); err != nil {
				return nil, err
			}
			return &pl, nil
		}
	}
	pl.Defaults()
	for _, ev := range evs {
		if ev.Type() == spec.MRoomCreate {
			pl.Users = map[string]int64{string(ev.SenderID()): 100}
		}
	}
	return &pl, nil
}

// userLevel returns the user's power level; room creators of v12 rooms have infinite power.
func (s *Server) userLevel(r *room, pl *gomatrixserverlib.PowerLevelContent, userID string) int64 {
	if r.version.PrivilegedCreators() {
		for _, c := range s.creators(r) {
			if c == userID {
				return math.MaxInt64
			}
		}
	}
	return pl.UserLevel(spec.SenderID(userID))
}

// creators returns the room creators: the create event's sender and additional_creators.
func (s *Server) creators(r *room) []string {
	evs, err := s.stateEvents(context.Background(), r.version, r.state, []storage.StateKey{{Type: spec.MRoomCreate}})
	if err != nil || len(evs) == 0 {
		return nil
	}
	var content struct {
		AdditionalCreators []string `json:"additional_creators"`
	}
	_ = json.Unmarshal(evs[0].Content(), &content)
	return append([]string{string(evs[0].SenderID())}, content.AdditionalCreators...)
}

// MaySendState reports whether the user is joined to the room and has the power to send a
// state event of type evType. Actions that stand for a state change without sending one use
// it: publishing the room in the directory needs the power to send m.room.canonical_alias, as
// in the reference server.
func (s *Server) MaySendState(ctx context.Context, roomID, userID, evType string) (bool, error) {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return false, err
	}
	defer r.unlock()
	if r.members[userID] != spec.Join {
		return false, nil
	}
	pl, err := s.powerLevels(ctx, r)
	if err != nil {
		return false, err
	}
	return s.userLevel(r, pl, userID) >= pl.EventLevel(evType, true), nil
}

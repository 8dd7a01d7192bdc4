package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// ErrRoomBlocked answers a local join, knock or invite (sent here or received from another
// server) to a room a server admin blocked.
var ErrRoomBlocked = spec.Forbidden("This room has been blocked on this server")

// ErrNoLocalAdmin answers make_room_admin in a room where no local member may change the power
// levels.
var ErrNoLocalAdmin = errors.New("No local admin user in room with power to update power levels.")

// checkNotBlocked returns ErrRoomBlocked when an admin blocked roomID: one indexed lookup,
// made on the join, knock and invite paths.
func (s *Server) checkNotBlocked(ctx context.Context, roomID string) error {
	_, err := s.db.RoomBlockedBy(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	return ErrRoomBlocked
}

// SetRoomBlocked blocks or unblocks roomID for local joins and invites; adminID is who did it.
func (s *Server) SetRoomBlocked(ctx context.Context, adminID, roomID string, block bool) error {
	return s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if block {
			return tx.BlockRoom(ctx, roomID, adminID, s.now().UnixMilli())
		}
		return tx.UnblockRoom(ctx, roomID)
	})
}

// localMembersByPower returns the local users joined to r, most powerful first (ties by
// user ID), with their power levels.
func (s *Server) localMembersByPower(r *room, pl *gomatrixserverlib.PowerLevelContent) ([]string, map[string]int64) {
	levels := map[string]int64{}
	var users []string
	for u, m := range r.members {
		if m == spec.Join && s.isLocal(u) {
			users = append(users, u)
			levels[u] = s.userLevel(r, pl, u)
		}
	}
	sort.Slice(users, func(i, j int) bool {
		if levels[users[i]] != levels[users[j]] {
			return levels[users[i]] > levels[users[j]]
		}
		return users[i] < users[j]
	})
	return users, levels
}

// MakeRoomAdmin gives target the highest power level a local member of the room has, sending
// the power levels as that member (the admin API's make_room_admin). When target is neither
// joined nor invited and the room is not public, that member invites them.
func (s *Server) MakeRoomAdmin(ctx context.Context, roomID, target string) error {
	if _, err := spec.NewUserID(target, true); err != nil {
		return spec.InvalidParam("invalid user ID")
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.unlock()
	pl, err := s.powerLevels(ctx, r)
	if err != nil {
		return err
	}
	users, levels := s.localMembersByPower(r, pl)
	if len(users) == 0 || levels[users[0]] < pl.EventLevel(spec.MRoomPowerLevels, true) {
		return ErrNoLocalAdmin
	}
	granter, level := users[0], levels[users[0]]
	if level == math.MaxInt64 { // a creator of a v12 room, whose power cannot be named: 100
		level = 100
	}
	if s.userLevel(r, pl, target) < level {
		raw := []byte(`{}`)
		if evs, err := s.stateEvents(ctx, r.version, r.state, []storage.StateKey{{Type: spec.MRoomPowerLevels}}); err != nil {
			return err
		} else if len(evs) > 0 {
			raw = evs[0].Content()
		}
		content, err := withUserLevel(raw, target, level)
		if err != nil {
			return err
		}
		key := ""
		if _, err := s.submit(ctx, r, eventRequest{Sender: granter, Type: spec.MRoomPowerLevels, StateKey: &key, Content: content}); err != nil {
			return err
		}
	}
	if m := r.members[target]; m == spec.Join || m == spec.Invite {
		return nil
	}
	if s.StateContent(ctx, r.state, storage.StateKey{Type: spec.MRoomJoinRules})["join_rule"] == spec.Public {
		return nil
	}
	return s.invite(ctx, r, granter, target, "", false)
}

// withUserLevel returns power levels content with users[userID] set to level. (An sjson path
// cannot name a user ID: a leading "@" is a path modifier.)
func withUserLevel(raw []byte, userID string, level int64) ([]byte, error) {
	var content map[string]json.RawMessage
	if err := json.Unmarshal(raw, &content); err != nil {
		return nil, err
	}
	users := map[string]json.RawMessage{}
	if u, ok := content["users"]; ok {
		if err := json.Unmarshal(u, &users); err != nil {
			return nil, err
		}
	}
	users[userID] = json.RawMessage(fmt.Sprint(level))
	u, err := json.Marshal(users)
	if err != nil {
		return nil, err
	}
	content["users"] = u
	return json.Marshal(content)
}

// ForceJoin joins a local user to a room this server is in (the admin API's join): directly
// into a public room, else after an invite from adminID when joined with the power to invite,
// or from the most powerful local member who has it.
func (s *Server) ForceJoin(ctx context.Context, adminID, roomIDOrAlias, userID string) (string, error) {
	roomID, err := s.ResolveRoom(ctx, roomIDOrAlias)
	if err != nil {
		return "", err
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	if !s.resident(r) {
		r.unlock()
		return "", spec.NotFound("this server is not in the room")
	}
	if r.members[userID] == spec.Join {
		r.unlock()
		return roomID, nil
	}
	if s.StateContent(ctx, r.state, storage.StateKey{Type: spec.MRoomJoinRules})["join_rule"] != spec.Public && r.members[userID] != spec.Invite {
		pl, err := s.powerLevels(ctx, r)
		if err != nil {
			r.unlock()
			return "", err
		}
		users, levels := s.localMembersByPower(r, pl)
		inviter := ""
		if r.members[adminID] == spec.Join && s.userLevel(r, pl, adminID) >= pl.Invite {
			inviter = adminID
		} else if len(users) > 0 && levels[users[0]] >= pl.Invite {
			inviter = users[0]
		}
		if inviter == "" {
			r.unlock()
			return "", spec.Forbidden("no local member of the room may invite the user")
		}
		if err := s.invite(ctx, r, inviter, userID, "", false); err != nil {
			r.unlock()
			return "", err
		}
	}
	r.unlock()
	return s.Join(ctx, userID, roomID, "")
}

// DeleteForwardExtremities keeps only the deepest of the room's forward extremities and
// returns how many it dropped. The room's current state is left as it is (it is the
// resolution of every extremity's state): the next event cites only the kept extremity and is
// built on that current state, so nothing is lost locally; other servers may resolve its state
// differently, which is why the reference server warns against using this lightly.
func (s *Server) DeleteForwardExtremities(ctx context.Context, roomID string) (int, error) {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return 0, err
	}
	defer r.unlock()
	if len(r.extremities) <= 1 {
		return 0, nil
	}
	infos, err := s.db.ForwardExtremityInfo(ctx, r.nid)
	if err != nil || len(infos) == 0 {
		return 0, err
	}
	var kept []extremity
	for _, x := range r.extremities {
		if x.id == infos[0].EventID {
			kept = append(kept, x)
		}
	}
	if len(kept) != 1 {
		return 0, fmt.Errorf("forward extremities of %s changed under the lock", roomID)
	}
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		return tx.SetForwardExtremities(ctx, r.nid, []int64{kept[0].nid})
	})
	if err != nil {
		return 0, err
	}
	n := len(r.extremities) - 1
	r.extremities = kept
	return n, nil
}

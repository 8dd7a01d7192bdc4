package roomserver

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// transferredState lists the state events an upgrade copies into the replacement room, as the
// spec's "Server behaviour" for room upgrades says (power levels are handled separately).
var transferredState = []string{
	"m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
	"m.room.guest_access", spec.MRoomHistoryVisibility, spec.MRoomJoinRules,
}

// Upgrade replaces a room by a new one of another version, following the spec's steps:
//  1. the user must be allowed to send m.room.tombstone in the old room;
//  2. a replacement room is created whose create event names its predecessor;
//  3. the transferable state and the power levels are copied across;
//  4. local aliases move to the new room;
//  5. the old room gets a tombstone pointing at the new one;
//  6. the old room's power levels are raised so that ordinary members can no longer talk or invite.
func (s *Server) Upgrade(ctx context.Context, userID, roomID, newVersion string, additionalCreators []string) (string, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(newVersion))
	if err != nil {
		return "", spec.UnsupportedRoomVersion(fmt.Sprintf("room version %q is not supported", newVersion))
	}
	old, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	pl, err := s.powerLevels(ctx, old)
	if err != nil {
		old.unlock()
		return "", err
	}
	if s.userLevel(old, pl, userID) < pl.EventLevel("m.room.tombstone", true) {
		old.unlock()
		return "", spec.Forbidden("you may not upgrade this room")
	}
	stateEvs, err := s.stateEvents(ctx, old.version, old.state, nil)
	old.unlock()
	if err != nil {
		return "", err
	}
	byType := map[string]gomatrixserverlib.PDU{}
	for _, ev := range stateEvs {
		if ev.StateKeyEquals("") {
			byType[ev.Type()] = ev
		}
	}

	req := CreateRoomRequest{RoomVersion: newVersion, CreationContent: map[string]any{"predecessor": map[string]any{"room_id": roomID}}}
	if ver.PrivilegedCreators() && len(additionalCreators) > 0 {
		extra := make([]any, len(additionalCreators))
		for i, u := range additionalCreators {
			if _, err := spec.NewUserID(u, true); err != nil {
				return "", spec.InvalidParam("invalid user ID in additional_creators")
			}
			extra[i] = u
		}
		req.CreationContent["additional_creators"] = extra
	}
	if create := byType[spec.MRoomCreate]; create != nil {
		var c map[string]any
		if json.Unmarshal(create.Content(), &c) == nil && c["type"] != nil {
			req.CreationContent["type"] = c["type"] // a space stays a space
		}
	}
	r, newID, err := s.createRoomRow(ctx, userID, ver, req)
	if err != nil {
		return "", err
	}
	if err := s.fillUpgradedRoom(ctx, r, userID, ver, byType, additionalCreators); err != nil {
		r.unlock()
		return "", err
	}
	r.unlock()
	if err := s.moveAliases(ctx, userID, roomID, newID, byType["m.room.canonical_alias"]); err != nil {
		return "", err
	}
	return newID, s.tombstone(ctx, userID, roomID, newID)
}

// fillUpgradedRoom sends the creator's join, the power levels and the transferred state into
// the new room r (locked by the caller).
func (s *Server) fillUpgradedRoom(ctx context.Context, r *room, userID string, ver gomatrixserverlib.IRoomVersion, byType map[string]gomatrixserverlib.PDU, additionalCreators []string) error {
	if _, err := s.submitMember(ctx, r, userID, userID, s.memberContent(ctx, userID, spec.Join, "")); err != nil {
		return err
	}
	plContent := map[string]any{}
	if pl := byType[spec.MRoomPowerLevels]; pl != nil {
		_ = json.Unmarshal(pl.Content(), &plContent)
	}
	users, _ := plContent["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	if ver.PrivilegedCreators() {
		// Creators have infinite power in v12 and must not be listed.
		delete(users, userID)
		for _, c := range additionalCreators {
			delete(users, c)
		}
	} else {
		users[userID] = 100
	}
	plContent["users"] = users
	raw, _ := json.Marshal(plContent)
	empty := ""
	if _, err := s.submit(ctx, r, eventRequest{Sender: userID, Type: spec.MRoomPowerLevels, StateKey: &empty, Content: raw}); err != nil {
		return fmt.Errorf("upgrade: power levels: %w", err)
	}
	for _, t := range transferredState {
		ev := byType[t]
		if ev == nil {
			continue
		}
		if _, err := s.submit(ctx, r, eventRequest{Sender: userID, Type: t, StateKey: &empty, Content: ev.Content()}); err != nil {
			return fmt.Errorf("upgrade: %s: %w", t, err)
		}
	}
	return nil
}

// moveAliases points the old room's local aliases at the new room and moves the canonical alias.
func (s *Server) moveAliases(ctx context.Context, userID, oldID, newID string, canonical gomatrixserverlib.PDU) error {
	aliases, err := s.db.RoomAliases(ctx, oldID)
	if err != nil {
		return err
	}
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		for _, a := range aliases {
			_, creator, err := tx.Alias(ctx, a)
			if err != nil {
				return err
			}
			if err := tx.DeleteAlias(ctx, a); err != nil {
				return err
			}
			if err := tx.InsertAlias(ctx, a, newID, creator); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || canonical == nil {
		return err
	}
	empty := ""
	r, err := s.lockRoom(ctx, newID)
	if err != nil {
		return err
	}
	_, err = s.submit(ctx, r, eventRequest{Sender: userID, Type: "m.room.canonical_alias", StateKey: &empty, Content: canonical.Content()})
	r.unlock()
	if err != nil {
		return err
	}
	old, err := s.lockRoom(ctx, oldID)
	if err != nil {
		return err
	}
	defer old.unlock()
	_, err = s.submit(ctx, old, eventRequest{Sender: userID, Type: "m.room.canonical_alias", StateKey: &empty, Content: json.RawMessage(`{}`)})
	return err
}

// tombstone closes the old room: the tombstone event, then power levels that keep ordinary
// members from sending or inviting.
func (s *Server) tombstone(ctx context.Context, userID, oldID, newID string) error {
	old, err := s.lockRoom(ctx, oldID)
	if err != nil {
		return err
	}
	defer old.unlock()
	empty := ""
	content, _ := json.Marshal(map[string]string{"body": "This room has been replaced", "replacement_room": newID})
	if _, err := s.submit(ctx, old, eventRequest{Sender: userID, Type: "m.room.tombstone", StateKey: &empty, Content: content}); err != nil {
		return err
	}
	pl, err := s.powerLevels(ctx, old)
	if err != nil {
		return err
	}
	level := max(int64(50), pl.UsersDefault+1)
	evs, err := s.stateEvents(ctx, old.version, old.state, []storage.StateKey{{Type: spec.MRoomPowerLevels}})
	if err != nil || len(evs) == 0 {
		return err
	}
	var plContent map[string]any
	if err := json.Unmarshal(evs[0].Content(), &plContent); err != nil {
		return err
	}
	plContent["events_default"] = max(level, pl.EventsDefault)
	plContent["invite"] = max(level, pl.Invite)
	raw, _ := json.Marshal(plContent)
	_, err = s.submit(ctx, old, eventRequest{Sender: userID, Type: spec.MRoomPowerLevels, StateKey: &empty, Content: raw})
	if err != nil {
		s.log.Warn("upgrade: old room's power levels not restricted", "room_id", oldID, "err", err)
	}
	return nil
}

// Predecessor returns the ID of the room that roomID replaces, named by the predecessor of
// its create event, or "" when it replaces none.
func (s *Server) Predecessor(ctx context.Context, roomID string) (string, error) {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	state := r.state
	r.unlock()
	pred, _ := s.StateContent(ctx, state, storage.StateKey{Type: spec.MRoomCreate})["predecessor"].(map[string]any)
	id, _ := pred["room_id"].(string)
	return id, nil
}

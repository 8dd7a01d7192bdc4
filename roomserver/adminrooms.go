package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

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

// ErrStillJoined stops a purge while local users are still joined to the room.
var ErrStillJoined = errors.New("Users are still joined to this room")

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
	defer r.mu.Unlock()
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
		r.mu.Unlock()
		return "", spec.NotFound("this server is not in the room")
	}
	if r.members[userID] == spec.Join {
		r.mu.Unlock()
		return roomID, nil
	}
	if s.StateContent(ctx, r.state, storage.StateKey{Type: spec.MRoomJoinRules})["join_rule"] != spec.Public && r.members[userID] != spec.Invite {
		pl, err := s.powerLevels(ctx, r)
		if err != nil {
			r.mu.Unlock()
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
			r.mu.Unlock()
			return "", spec.Forbidden("no local member of the room may invite the user")
		}
		if err := s.invite(ctx, r, inviter, userID, "", false); err != nil {
			r.mu.Unlock()
			return "", err
		}
	}
	r.mu.Unlock()
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
	defer r.mu.Unlock()
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

// ShutdownOptions are the parameters of the admin API's delete room.
type ShutdownOptions struct {
	NewRoomUserID string
	RoomName      string
	Message       string
	Block         bool
	Purge         bool
	ForcePurge    bool
}

// ShutdownResult is the admin API's shutdown_room object.
type ShutdownResult struct {
	KickedUsers       []string `json:"kicked_users"`
	FailedToKickUsers []string `json:"failed_to_kick_users"`
	LocalAliases      []string `json:"local_aliases"`
	NewRoomID         *string  `json:"new_room_id"`
}

// ShutdownRoom shuts a room down for this server, as the admin API's delete room does:
//  1. block it for local joins and invites (opts.Block);
//  2. create a new room owned by opts.NewRoomUserID where it posts opts.Message (when given);
//  3. make every local member leave (and, without purge, forget it), joining them to the new room;
//  4. take the room out of the directory and move its local aliases to the new room (or delete them);
//  5. purge all of its data (opts.Purge), unless local users are still joined and not opts.ForcePurge.
//
// progress is told the result once the members are out, before the purge.
func (s *Server) ShutdownRoom(ctx context.Context, adminID, roomID string, opts ShutdownOptions, progress func(*ShutdownResult)) (*ShutdownResult, error) {
	res := &ShutdownResult{KickedUsers: []string{}, FailedToKickUsers: []string{}, LocalAliases: []string{}}
	if opts.Block {
		if err := s.SetRoomBlocked(ctx, adminID, roomID, true); err != nil {
			return res, err
		}
	}
	room, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return res, errUnknownRoom
	} else if err != nil {
		return res, err
	}
	newRoomID := ""
	if opts.NewRoomUserID != "" {
		name := opts.RoomName
		newRoomID, err = s.CreateRoom(ctx, opts.NewRoomUserID, "", CreateRoomRequest{
			Preset: PresetPublicChat, Name: &name,
			PowerLevelContentOverride: map[string]any{"users_default": -10},
		})
		if err != nil {
			return res, fmt.Errorf("create the new room: %w", err)
		}
		res.NewRoomID = &newRoomID
		body, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": opts.Message})
		if _, err := s.SendMessage(ctx, Sender{UserID: opts.NewRoomUserID}, newRoomID, "m.room.message", body, ""); err != nil {
			return res, fmt.Errorf("post the message in the new room: %w", err)
		}
	}
	members, err := s.db.RoomMembers(ctx, room.NID, spec.Join)
	if err != nil {
		return res, err
	}
	for _, m := range members {
		if !s.isLocal(m.UserID) {
			continue
		}
		if err := s.evict(ctx, roomID, m.UserID, newRoomID, !opts.Purge); err != nil {
			s.log.Warn("shutdown room: member not removed", "room_id", roomID, "user_id", m.UserID, "err", err)
			res.FailedToKickUsers = append(res.FailedToKickUsers, m.UserID)
			continue
		}
		res.KickedUsers = append(res.KickedUsers, m.UserID)
	}
	if res.LocalAliases, err = s.shutdownAliases(ctx, room.NID, roomID, newRoomID, opts.NewRoomUserID); err != nil {
		return res, err
	}
	if progress != nil {
		progress(res)
	}
	if opts.Purge {
		s.awaitOutbox(ctx, room.NID, roomID)
		if err := s.PurgeRoom(ctx, roomID, opts.ForcePurge); err != nil {
			return res, err
		}
	}
	return res, nil
}

// outboxWait bounds how long a purge waits for the room's events (the members' leaves) to
// reach the other servers of the room.
const outboxWait = 30 * time.Second

// awaitOutbox waits, up to outboxWait, until no event of the room is queued for another
// server, so that the other servers learn that this server's users left before the purge
// takes the events away (the federation sender leaves out queued events no longer stored).
// A server that stays unreachable for that long does not learn it.
func (s *Server) awaitOutbox(ctx context.Context, roomNID int64, roomID string) {
	deadline := time.Now().Add(outboxWait)
	for {
		n, err := s.db.RoomQueuedPDUs(ctx, roomNID)
		if err != nil || n == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.log.Warn("purging a room whose events some servers have not received", "room_id", roomID, "queued", n)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// evict makes a local user leave roomID and, when newRoomID is set, join it; forget also
// forgets the old room for them.
func (s *Server) evict(ctx context.Context, roomID, userID, newRoomID string, forget bool) error {
	if err := s.Leave(ctx, userID, roomID, ""); err != nil {
		return err
	}
	if forget {
		if err := s.Forget(ctx, userID, roomID); err != nil {
			return err
		}
	}
	if newRoomID != "" {
		if _, err := s.Join(ctx, userID, newRoomID, ""); err != nil {
			s.log.Warn("shutdown room: user not moved to the new room", "room_id", newRoomID, "user_id", userID, "err", err)
		}
	}
	return nil
}

// shutdownAliases takes the room out of the directory and points its local aliases at newRoomID
// (owned by owner), or deletes them when there is no new room. It returns the aliases.
func (s *Server) shutdownAliases(ctx context.Context, roomNID int64, roomID, newRoomID, owner string) ([]string, error) {
	aliases, err := s.db.RoomAliases(ctx, roomID)
	if err != nil {
		return nil, err
	}
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.SetRoomVisibility(ctx, roomNID, "private"); err != nil {
			return err
		}
		for _, a := range aliases {
			if err := tx.DeleteAlias(ctx, a); err != nil {
				return err
			}
			if newRoomID != "" {
				if err := tx.InsertAlias(ctx, a, newRoomID, owner); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if aliases == nil {
		aliases = []string{}
	}
	return aliases, err
}

// PurgeRoom deletes all of a room's data, under the room's lock, and forgets the room's
// in-memory head: the room is unknown to this server afterwards. While local users are
// joined it refuses with ErrStillJoined, unless force.
func (s *Server) PurgeRoom(ctx context.Context, roomID string, force bool) error {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.mu.Unlock()
	if !force {
		for u, m := range r.members {
			if m == spec.Join && s.isLocal(u) {
				return ErrStillJoined
			}
		}
	}
	if err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.PurgeRoom(ctx, r.nid, roomID) }); err != nil {
		return err
	}
	r.loaded = false
	s.mu.Lock()
	if s.rooms[roomID] == r {
		delete(s.rooms, roomID)
	}
	s.mu.Unlock()
	return nil
}

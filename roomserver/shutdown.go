package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// ErrStillJoined stops a purge while local users are still joined to the room.
var ErrStillJoined = errors.New("Users are still joined to this room")

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
//  3. make every local member leave, joining them to the new room;
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
		if err := s.evict(ctx, roomID, m.UserID, newRoomID); err != nil {
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

// evict makes a local user leave roomID and, when newRoomID is set, join it. The old room is
// not forgotten for them: their clients learn from /sync that they left (a forgotten room is
// left out of /sync, and a client would keep showing a room it can no longer leave).
func (s *Server) evict(ctx context.Context, roomID, userID, newRoomID string) error {
	if err := s.Leave(ctx, userID, roomID, ""); err != nil {
		return err
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
	defer r.unlock()
	if !force {
		for u, m := range r.members {
			if m == spec.Join && s.isLocal(u) {
				return ErrStillJoined
			}
		}
	}
	leaves, err := s.purgedLeaves(ctx, r.nid, roomID)
	if err != nil {
		return err
	}
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.PurgeRoom(ctx, r.nid, roomID); err != nil {
			return err
		}
		return tx.InsertPurgedLeaves(ctx, leaves)
	})
	if err != nil {
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

// purgedLeaves returns the last membership events of the room's local users who left or were
// banned and have not forgotten it, as each sees it, to be kept past the purge: a client that
// synced before the room was deleted learns from its next /sync that it left, rather than
// keeping a room that no longer exists for this server.
func (s *Server) purgedLeaves(ctx context.Context, roomNID int64, roomID string) ([]storage.PurgedLeave, error) {
	members, err := s.db.RoomMembers(ctx, roomNID, "")
	if err != nil {
		return nil, err
	}
	var leaves []storage.PurgedLeave
	for _, m := range members {
		if !s.isLocal(m.UserID) || m.Forgotten || (m.Membership != spec.Leave && m.Membership != spec.Ban) {
			continue
		}
		evs, err := s.db.EventsByNID(ctx, []int64{m.EventNID})
		if err != nil {
			return nil, err
		}
		if len(evs) == 0 {
			continue
		}
		ce, err := s.ClientEvent(ctx, roomID, evs[0], Viewer{UserID: m.UserID})
		if err != nil {
			return nil, err
		}
		js, err := json.Marshal(ce)
		if err != nil {
			return nil, err
		}
		leaves = append(leaves, storage.PurgedLeave{UserID: m.UserID, RoomID: roomID, StreamPos: m.EventNID, EventJSON: js})
	}
	return leaves, nil
}

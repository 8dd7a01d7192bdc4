package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/sjson"

	"github.com/lattice-chat/lattice/storage"
)

// ResolveRoom returns the room ID for a room ID or a local alias.
func (s *Server) ResolveRoom(ctx context.Context, roomIDOrAlias string) (string, error) {
	switch {
	case strings.HasPrefix(roomIDOrAlias, "!"):
		return roomIDOrAlias, nil
	case strings.HasPrefix(roomIDOrAlias, "#"):
		roomID, _, err := s.db.Alias(ctx, roomIDOrAlias)
		if errors.Is(err, storage.ErrNotFound) {
			return "", spec.NotFound("room alias not found")
		}
		return roomID, err
	default:
		return "", spec.InvalidParam("not a room ID or alias")
	}
}

// ErrInviteBlocked answers an invite to a local user who blocks invites (the spec's invite
// permission, v1.18).
var ErrInviteBlocked = spec.MatrixError{ErrCode: "M_INVITE_BLOCKED", Err: "the user does not accept invites"}

// Join makes userID join the room, with their profile in the member event (JoinVia, with
// no servers named).
func (s *Server) Join(ctx context.Context, userID, roomIDOrAlias, reason string) (string, error) {
	var extra map[string]any
	if reason != "" {
		extra = map[string]any{"reason": reason}
	}
	return s.JoinVia(ctx, userID, roomIDOrAlias, extra, nil)
}

// Leave makes userID leave the room (or reject an invite); a room this server is not in
// is left through another server.
func (s *Server) Leave(ctx context.Context, userID, roomID, reason string) error {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	if s.remote != nil && !s.resident(r) && r.members[userID] != "" {
		return s.leaveRemote(ctx, r, userID) // unlocks r
	}
	defer r.unlock()
	if err := s.checkNoticeInviteKept(ctx, r, roomID, userID); err != nil {
		return err
	}
	_, err = s.submitMember(ctx, r, userID, userID, s.memberContent(ctx, "", spec.Leave, reason))
	return err
}

// checkNoticeInviteKept refuses the rejection of the invite to one's server notices room: the
// server notices module says it "must result in a M_CANNOT_LEAVE_SERVER_NOTICE_ROOM error".
// Once joined, the user may leave (and the next notice invites them again). The caller holds
// the room's lock.
func (s *Server) checkNoticeInviteKept(ctx context.Context, r *room, roomID, userID string) error {
	if r.members[userID] != spec.Invite {
		return nil
	}
	if noticeRoom, err := s.db.ServerNoticeRoom(ctx, userID); err == nil && noticeRoom == roomID {
		return ErrCannotLeaveServerNoticeRoom
	}
	return nil
}

// ErrCannotLeaveServerNoticeRoom is Leave's answer to a user rejecting the invite to their
// server notices room (403).
var ErrCannotLeaveServerNoticeRoom = spec.MatrixError{ErrCode: "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM", Err: "you cannot reject the invite to the server notices room"}

// Invite invites target to the room.
func (s *Server) Invite(ctx context.Context, userID, roomID, target, reason string) error {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.unlock()
	return s.invite(ctx, r, userID, target, reason, false)
}

func (s *Server) invite(ctx context.Context, r *room, userID, target, reason string, isDirect bool) error {
	if _, err := spec.NewUserID(target, true); err != nil {
		return spec.InvalidParam("invalid user ID")
	}
	if err := s.checkNotBlocked(ctx, r.id); err != nil {
		return err
	}
	if r.members[target] == spec.Join {
		return spec.Forbidden(target + " is already in the room")
	}
	if r.members[target] == spec.Ban {
		return spec.Forbidden(target + " is banned from the room")
	}
	content := s.memberContent(ctx, target, spec.Invite, reason)
	if isDirect {
		content["is_direct"] = true
	}
	_, err := s.submitMember(ctx, r, userID, target, content)
	return err
}

// Kick removes target from the room.
func (s *Server) Kick(ctx context.Context, userID, roomID, target, reason string) error {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.unlock()
	switch r.members[target] {
	case spec.Join, spec.Invite, spec.Knock:
	default:
		return spec.Forbidden(target + " is not in the room")
	}
	_, err = s.submitMember(ctx, r, userID, target, s.memberContent(ctx, "", spec.Leave, reason))
	return err
}

// Ban bans target from the room.
func (s *Server) Ban(ctx context.Context, userID, roomID, target, reason string) error {
	return s.changeMembership(ctx, userID, roomID, target, spec.Ban, reason)
}

// Unban lifts a ban; the target's membership becomes leave.
func (s *Server) Unban(ctx context.Context, userID, roomID, target, reason string) error {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.unlock()
	if r.members[target] != spec.Ban {
		return spec.Forbidden(target + " is not banned")
	}
	_, err = s.submitMember(ctx, r, userID, target, s.memberContent(ctx, "", spec.Leave, reason))
	return err
}

// ErrNotLeft is Forget's answer for a room the user is still in (joined, invited or
// knocking). The spec makes it 400 M_UNKNOWN, a status the errcode alone does not give, so
// the client API maps it.
var ErrNotLeft = errors.New("you must leave the room before forgetting it")

// Forget hides a room the user has left from their future syncs.
func (s *Server) Forget(ctx context.Context, userID, roomID string) error {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.unlock()
	switch r.members[userID] {
	case spec.Join, spec.Invite, spec.Knock:
		return ErrNotLeft
	case "":
		return spec.NotFound("you were never in this room")
	}
	return s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.ForgetRoom(ctx, r.nid, userID) })
}

func (s *Server) changeMembership(ctx context.Context, userID, roomID, target, membership, reason string) error {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.unlock()
	_, err = s.submitMember(ctx, r, userID, target, s.memberContent(ctx, "", membership, reason))
	return err
}

func (s *Server) submitMember(ctx context.Context, r *room, sender, target string, content map[string]any) (*storage.Event, error) {
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	return s.submit(ctx, r, eventRequest{Sender: sender, Type: spec.MRoomMember, StateKey: &target, Content: raw})
}

// memberContent returns member event content; with profileOf set, that local user's display
// name and avatar are included, as clients show them.
func (s *Server) memberContent(ctx context.Context, profileOf, membership, reason string) map[string]any {
	content := map[string]any{"membership": membership}
	if reason != "" {
		content["reason"] = reason
	}
	if profileOf != "" && s.isLocal(profileOf) {
		if p, err := s.db.Profile(ctx, profileOf); err == nil {
			if p.DisplayName != "" {
				content["displayname"] = p.DisplayName
			}
			if p.AvatarURL != "" {
				content["avatar_url"] = p.AvatarURL
			}
		}
	}
	return content
}

// UpdateProfile sends a new member event with the user's current profile into every room
// they are joined to.
func (s *Server) UpdateProfile(ctx context.Context, userID string) error {
	ms, err := s.db.UserMemberships(ctx, userID, spec.Join)
	if err != nil {
		return err
	}
	for _, m := range ms {
		r, err := s.lockRoom(ctx, m.RoomID)
		if err != nil {
			return err
		}
		_, err = s.submitMember(ctx, r, userID, userID, s.memberContent(ctx, userID, spec.Join, ""))
		r.unlock()
		if err != nil {
			s.log.Warn("profile update not sent", "room_id", m.RoomID, "user_id", userID, "err", err)
		}
	}
	return nil
}

// Knock asks to join a room whose join rule is knock; a member with invite power approves
// by inviting, as the spec's knocking flow says.
func (s *Server) Knock(ctx context.Context, userID, roomIDOrAlias, reason string, via []string) (string, error) {
	var roomID string
	var err error
	if strings.HasPrefix(roomIDOrAlias, "#") && s.remote != nil && !s.isLocalAlias(roomIDOrAlias) {
		var servers []spec.ServerName
		if roomID, servers, err = s.remote.QueryAlias(ctx, roomIDOrAlias); err != nil {
			return "", err
		}
		for _, srv := range servers {
			via = append(via, string(srv))
		}
	} else if roomID, err = s.ResolveRoom(ctx, roomIDOrAlias); err != nil {
		return "", err
	}
	if err := s.checkNotBlocked(ctx, roomID); err != nil {
		return "", err
	}
	r, err := s.lockRoom(ctx, roomID)
	if errors.Is(err, errUnknownRoom) && s.remote != nil {
		return roomID, s.knockRemote(ctx, nil, roomID, userID, reason, via)
	} else if err != nil {
		return "", err
	}
	if s.remote != nil && !s.resident(r) {
		return roomID, s.knockRemote(ctx, r, roomID, userID, reason, via) // unlocks r
	}
	defer r.unlock()
	if _, err := s.submitMember(ctx, r, userID, userID, s.memberContent(ctx, userID, spec.Knock, reason)); err != nil {
		return "", err
	}
	return roomID, nil
}

// knockRemote knocks on a room this server is not in (r, locked, when the room is known at
// all; knockRemote unlocks it), through via, the room ID's server and the servers of the
// room's last known members. The knock and the room's stripped state are stored so that
// the user's /sync shows the knock.
func (s *Server) knockRemote(ctx context.Context, r *room, roomID, userID, reason string, via []string) error {
	var servers []spec.ServerName
	for _, v := range via {
		servers = append(servers, spec.ServerName(v))
	}
	if r != nil {
		servers = append(servers, s.joinCandidates(ctx, r, userID)...)
		r.unlock()
	}
	if i := strings.IndexByte(roomID, ':'); i >= 0 {
		servers = append(servers, spec.ServerName(roomID[i+1:]))
	}
	servers = dedupServers(servers, s.cfg.ServerName)
	if len(servers) == 0 {
		return spec.NotFound("no server to knock through: give one with via")
	}
	pdu, state, err := s.remote.Knock(ctx, servers, roomID, userID, s.memberContent(ctx, userID, spec.Knock, reason))
	if err != nil {
		var me spec.MatrixError
		if errors.As(err, &me) {
			return me
		}
		s.log.Warn("remote knock failed", "room_id", roomID, "user_id", userID, "servers", servers, "err", err)
		return spec.NotFound("could not knock through any server")
	}
	raw := pdu.JSON()
	if ss, err := json.Marshal(state); err == nil && len(state) > 0 {
		if withState, err := sjson.SetRawBytes(raw, "unsigned.knock_room_state", ss); err == nil {
			raw = withState
		}
	}
	return s.storeOutOfRoomMembership(ctx, pdu, raw, spec.Knock)
}

package roomserver

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// rejectInviteLocally rejects an invite (or withdraws a knock) to a room this server is not
// in when no server of the room can be reached: the inviter's server is gone, or no longer in
// the room. The user still asked to leave, and their clients must see the room move to
// "leave" in /sync, so the server makes an out-of-band leave event: the user's leave, signed
// by this server, whose only prev and auth event is the invite. Nobody else receives it (no
// one could); it exists so that the leave has a place in this server's event stream.
func (s *Server) rejectInviteLocally(ctx context.Context, roomID, userID, reason string) error {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	var invite *storage.Event
	ms, err := s.db.RoomMembers(ctx, r.nid, "")
	for _, m := range ms {
		if m.UserID == userID && (m.Membership == spec.Invite || m.Membership == spec.Knock) {
			evs, err := s.db.EventsByNID(ctx, []int64{m.EventNID})
			if err == nil && len(evs) == 1 {
				invite = evs[0]
			}
		}
	}
	ver := r.version
	r.unlock()
	if err != nil {
		return err
	}
	if invite == nil || ver == nil {
		return spec.Forbidden("you are not invited to this room")
	}
	content := map[string]any{"membership": spec.Leave}
	if reason != "" {
		content["reason"] = reason
	}
	raw, _ := json.Marshal(content)
	proto := gomatrixserverlib.ProtoEvent{
		SenderID: userID, RoomID: roomID, Type: spec.MRoomMember, StateKey: &userID, Content: raw,
		Depth: invite.Depth + 1, PrevEvents: []string{invite.EventID}, AuthEvents: []string{invite.EventID},
	}
	pdu, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(s.now(), s.cfg.ServerName, s.cfg.KeyID, s.cfg.PrivateKey)
	if err != nil {
		return fmt.Errorf("build out-of-band leave: %w", err)
	}
	return s.storeOutOfRoomMembershipIf(ctx, pdu, pdu.JSON(), spec.Leave, func(r *room) bool {
		m := r.members[userID]
		return !s.hasState(r) && (m == spec.Invite || m == spec.Knock)
	})
}

// outOfRoomMembership decides whether pdu, received from origin for a room this server is
// not in, is a change to a local user's invite, knock or ban that this server must record
// although it cannot check it against the room's state: the inviter rescinding an invite (a
// kick), a ban, an unban, or the refusal of a knock. It returns the new membership. Without
// the room's state the auth rules cannot be applied, so only the server that sent the invite
// or the ban (its sender's server) may change it, to leave or ban; a knock may only be
// turned into a leave.
func (s *Server) outOfRoomMembership(ctx context.Context, r *room, origin spec.ServerName, pdu gomatrixserverlib.PDU) (string, bool) {
	target := pdu.StateKey()
	if pdu.Type() != spec.MRoomMember || target == nil || !s.isLocal(*target) || serverOf(string(pdu.SenderID())) != string(origin) {
		return "", false
	}
	membership, err := pdu.Membership()
	if err != nil || (membership != spec.Leave && membership != spec.Ban) {
		return "", false
	}
	current := r.members[*target]
	if current != spec.Invite && current != spec.Knock && current != spec.Ban {
		return "", false
	}
	ms, err := s.db.RoomMembers(ctx, r.nid, "")
	if err != nil {
		return "", false
	}
	for _, m := range ms {
		if m.UserID != *target {
			continue
		}
		evs, err := s.db.EventsByNID(ctx, []int64{m.EventNID})
		if err != nil || len(evs) != 1 {
			return "", false
		}
		prev := evs[0]
		if pdu.Depth() <= prev.Depth {
			// Older than what this server has, which arrived first by another path (an
			// invite comes by /invite at once, the events before it through the queue).
			return "", false
		}
		if current == spec.Knock {
			// Our own knock, refused by a resident server: which server answers is not
			// recorded, so any may only turn it into a leave (the user may knock again),
			// never a ban.
			return membership, membership == spec.Leave
		}
		return membership, serverOf(prev.Sender) == string(origin)
	}
	return "", false
}

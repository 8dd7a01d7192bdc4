package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"math"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lattice-chat/lattice/storage"
)

// Restricted rooms: the join rules restricted and knock_restricted (room versions 8 and 10
// onwards) let a user who is neither invited nor joined join when they are a joined member
// of one of the rooms the rule's allow list names (client-server API "Restricted rooms").
// The join names, in content.join_authorised_via_users_server, a member of the room who may
// invite; the auth rules accept it only when that member is joined with the invite level
// (rooms/v10.md 4.3.5, rooms/v12.md 5.3.5) and the event is signed by that member's server
// (v10 4.2, v12 5.2). Whether the user is in an allowed room is the resident server's call:
// it picks the authorising member in make_join and signs the join in send_join
// (server-server API "Restricted rooms").

// authorisedViaKey is the member content key naming the user who authorised a join.
const authorisedViaKey = "join_authorised_via_users_server"

// ErrUnableToGrantJoin is the server-server API's M_UNABLE_TO_GRANT_JOIN (400): the user
// meets a condition of the join rule, but no user of this server in the room may invite, so
// no join this server authorises would pass the auth rules. The joining server should try
// another resident server.
var ErrUnableToGrantJoin = spec.MatrixError{ErrCode: "M_UNABLE_TO_GRANT_JOIN",
	Err: "no user of this server in the room may invite; try joining through another server"}

// isUnableToGrant reports whether err is ErrUnableToGrantJoin.
func isUnableToGrant(err error) bool {
	var me spec.MatrixError
	return errors.As(err, &me) && me.ErrCode == ErrUnableToGrantJoin.ErrCode
}

// joinRules returns the content of room r's current m.room.join_rules event ("invite", the
// auth rules' default, without one).
func (s *Server) joinRules(ctx context.Context, r *room) (gomatrixserverlib.JoinRuleContent, error) {
	rules := gomatrixserverlib.JoinRuleContent{JoinRule: spec.Invite}
	evs, err := s.stateEvents(ctx, r.version, r.state, []storage.StateKey{{Type: spec.MRoomJoinRules}})
	if err != nil {
		return rules, err
	}
	if len(evs) == 1 {
		// Unparseable content leaves the default, as the auth rules read it.
		_ = json.Unmarshal(evs[0].Content(), &rules)
	}
	return rules, nil
}

// checkRestrictedJoin reports whether userID's join of room r (locked) is a restricted join,
// one that needs join_authorised_via_users_server: the join rule is restricted or
// knock_restricted in a room version that has them, and the user is neither joined nor
// invited (who then join as in an invite-only room). For a restricted join it checks that
// the user is a joined member of a room the rule allows, as the server-server API's
// "Restricted rooms" says: M_FORBIDDEN when they are in none of them (also when the rule
// names no room this server understands), M_UNABLE_TO_AUTHORISE_JOIN when the user is of
// another server and this server is not in every allowed room, so cannot tell.
func (s *Server) checkRestrictedJoin(ctx context.Context, r *room, userID string) (bool, error) {
	if r.version.CheckRestrictedJoinsAllowed() != nil {
		return false, nil
	}
	switch r.members[userID] {
	case spec.Join, spec.Invite:
		return false, nil
	}
	rules, err := s.joinRules(ctx, r)
	if err != nil {
		return false, err
	}
	if rules.JoinRule != spec.Restricted && rules.JoinRule != spec.KnockRestricted {
		return false, nil
	}
	unknown := false
	for _, allow := range rules.Allow {
		// m.room_membership is the only condition the spec defines; others never match.
		if allow.Type != spec.MRoomMembership || allow.RoomID == "" {
			continue
		}
		joined, known, err := s.joinedTo(ctx, allow.RoomID, userID)
		if err != nil {
			return false, err
		}
		if joined {
			return true, nil
		}
		unknown = unknown || !known
	}
	if unknown && !s.isLocal(userID) {
		return false, spec.UnableToAuthoriseJoin("this server is not in every room the join rule allows, so cannot tell whether the user may join")
	}
	return false, spec.Forbidden("the join rule is " + rules.JoinRule + " and the user is not a joined member of any room it allows")
}

// joinedTo reports whether userID is joined to roomID, and whether this server knows: it
// does when it holds the room's state with one of its users joined (read without the
// room's lock, which the caller may not take while holding another room's).
func (s *Server) joinedTo(ctx context.Context, roomID, userID string) (joined, known bool, err error) {
	resident, err := s.residentStored(ctx, roomID)
	if err != nil || !resident {
		return false, false, err
	}
	row, err := s.db.Room(ctx, roomID)
	if err != nil {
		return false, false, err
	}
	m, err := s.db.Membership(ctx, row.NID, userID)
	if err != nil {
		return false, false, err
	}
	return m == spec.Join, true, nil
}

// joinAuthoriser returns the user to name in join_authorised_via_users_server for userID's
// join of room r (locked): "" when the join is not a restricted join (checkRestrictedJoin,
// whose errors it returns), else the joined local user with the highest power level at or
// above the invite level (room creators of v12 rooms have infinite power), the lowest user
// ID among equals so that the choice is stable; ErrUnableToGrantJoin when there is none.
func (s *Server) joinAuthoriser(ctx context.Context, r *room, userID string) (string, error) {
	if restricted, err := s.checkRestrictedJoin(ctx, r, userID); err != nil || !restricted {
		return "", err
	}
	pl, err := s.powerLevels(ctx, r)
	if err != nil {
		return "", err
	}
	best, bestLevel := "", int64(math.MinInt64)
	for u, m := range r.members {
		if m != spec.Join || !s.isLocal(u) {
			continue
		}
		level := s.userLevel(r, pl, u)
		if level < pl.Invite {
			continue
		}
		if level > bestLevel || (level == bestLevel && u < best) {
			best, bestLevel = u, level
		}
	}
	if best == "" {
		return "", ErrUnableToGrantJoin
	}
	return best, nil
}

// memberContentFor fixes the content of a local m.room.member event of room r (locked)
// before it is built:
//   - a restricted join (checkRestrictedJoin) gets join_authorised_via_users_server set to
//     joinAuthoriser's choice, whatever the client put there;
//   - any other membership event keeps the key only when it names a user of this server: the
//     auth rules reject an event carrying the key unless the named user's server signed it,
//     which no other server does for an event it did not authorise, and the key means
//     nothing outside a restricted join. A client updating its display name copies the key
//     from the member event of its join, which another server may have authorised.
func (s *Server) memberContentFor(ctx context.Context, r *room, sender, target string, content json.RawMessage) (json.RawMessage, error) {
	if gjson.GetBytes(content, "membership").String() == spec.Join && sender == target {
		via, err := s.joinAuthoriser(ctx, r, sender)
		if err != nil {
			return nil, err
		}
		if via != "" {
			return sjson.SetBytes(content, authorisedViaKey, via)
		}
	}
	if via := gjson.GetBytes(content, authorisedViaKey); via.Exists() && !s.isLocal(via.String()) {
		return sjson.DeleteBytes(content, authorisedViaKey)
	}
	return content, nil
}

// checkAuthorisedJoin checks a join another server sends (send_join) to room r (locked)
// that names a user of this server in join_authorised_via_users_server, before this server's
// signature on it is given out: the joining user must pass checkRestrictedJoin. Whether the
// named user is joined and may invite is left to the auth rules. A join naming another
// server's user carries that server's signature (checked on receipt) and its decision.
func (s *Server) checkAuthorisedJoin(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) error {
	via := gjson.GetBytes(pdu.Content(), authorisedViaKey)
	if !via.Exists() || !s.isLocal(via.String()) {
		return nil
	}
	_, err := s.checkRestrictedJoin(ctx, r, string(pdu.SenderID()))
	return err
}

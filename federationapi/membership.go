package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/roomserver/ownedstate"
)

// Memberships through a resident server: the make_* and send_* handshakes of joins, leaves
// and knocks, and invites of our users to rooms elsewhere. The roomserver builds and accepts
// the events (roomserver/federation.go); these handlers parse and check what the spec asks of
// the request and shape the answers.

// handleMakeJoin handles GET /_matrix/federation/v1/make_join/{roomId}/{userId}?ver=...
func (s *Server) handleMakeJoin(r *http.Request) (any, error) {
	versions := r.URL.Query()["ver"]
	if len(versions) == 0 {
		versions = []string{"1"} // the spec's default
	}
	return s.makeMembership(r, spec.Join, versions)
}

// handleMakeLeave handles GET /_matrix/federation/v1/make_leave/{roomId}/{userId}.
func (s *Server) handleMakeLeave(r *http.Request) (any, error) {
	return s.makeMembership(r, spec.Leave, nil)
}

// handleMakeKnock handles GET /_matrix/federation/v1/make_knock/{roomId}/{userId}?ver=...
func (s *Server) handleMakeKnock(r *http.Request) (any, error) {
	versions := r.URL.Query()["ver"]
	if len(versions) == 0 {
		return nil, spec.MissingParam("ver is required")
	}
	return s.makeMembership(r, spec.Knock, versions)
}

// makeMembership answers a make_* request: a template of the membership event for a user of
// the asking server, with origin and origin_server_ts filled in as the spec's template has
// them. versions (nil for make_leave) are the room versions the asking server supports.
func (s *Server) makeMembership(r *http.Request, membership string, versions []string) (any, error) {
	ctx := r.Context()
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	userID := httputil.PathVar(r, "userId")
	if !isUserOf(userID, request(ctx).Origin()) {
		return nil, spec.Forbidden("the user ID is not of the requesting server")
	}
	var supported []gomatrixserverlib.RoomVersion
	for _, v := range versions {
		supported = append(supported, gomatrixserverlib.RoomVersion(v))
	}
	tmpl, err := s.rs.MakeMembership(ctx, roomID, userID, membership, supported)
	if err != nil {
		return nil, membershipError(err)
	}
	raw, err := json.Marshal(tmpl.Event)
	if err != nil {
		return nil, fmt.Errorf("encode %s template: %w", membership, err)
	}
	var event map[string]any
	if err := json.Unmarshal(raw, &event); err != nil {
		return nil, fmt.Errorf("decode %s template: %w", membership, err)
	}
	event["origin"] = s.cfg.ServerName
	event["origin_server_ts"] = spec.AsTimestamp(s.cfg.Now())
	return map[string]any{"room_version": tmpl.Version, "event": event}, nil
}

// handleSendJoin handles PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}, with
// omit_members (MSC3706): "true" asks for the answer without membership events.
func (s *Server) handleSendJoin(r *http.Request) (any, error) {
	omit := false
	if q := r.URL.Query(); q.Has("omit_members") {
		switch q.Get("omit_members") {
		case "true":
			omit = true
		case "false":
		default:
			return nil, spec.InvalidParam("omit_members must be true or false")
		}
	}
	return s.sendJoin(r, omit)
}

// handleSendJoinV1 handles PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}: v2's
// checks, with the answer in the pair [200, body] that v1 had. The spec removed v1 in
// v1.18 (MSC4376), but servers that predate v2 still call it.
func (s *Server) handleSendJoinV1(r *http.Request) (any, error) {
	res, err := s.sendJoin(r, false)
	if err != nil {
		return nil, err
	}
	return []any{http.StatusOK, res}, nil
}

// sendJoin accepts a join and returns v2's answer: the event as accepted, the state before
// it and the auth chain; with omitMembers, the partial state of roomserver's
// SendJoinOmittingMembers and the servers in the room.
func (s *Server) sendJoin(r *http.Request, omitMembers bool) (map[string]any, error) {
	ctx := r.Context()
	pdu, err := s.receiveMembership(r, spec.Join)
	if err != nil {
		return nil, err
	}
	origin := request(ctx).Origin()
	var res *roomserver.StateAndAuth
	if omitMembers {
		res, err = s.rs.SendJoinOmittingMembers(ctx, origin, pdu)
	} else {
		res, err = s.rs.SendMembership(ctx, origin, spec.Join, pdu)
	}
	if err != nil {
		return nil, membershipError(err)
	}
	if omitMembers {
		// A partial state join is answered without waiting for the device list updates of
		// every local member (one transaction each: seconds in a big room, the time the
		// joining server wants to save); they are queued just after, as they would be.
		roomID := pdu.RoomID().String()
		if !s.sender.Go(func(ctx context.Context) { s.announceDevices(ctx, origin, roomID) }) {
			s.announceDevices(ctx, origin, roomID)
		}
	} else {
		s.announceDevices(ctx, origin, pdu.RoomID().String())
	}
	// The event as we accepted it: with our signature when the roomserver added one.
	event := json.RawMessage(pdu.JSON())
	if stored, err := s.db.Event(ctx, pdu.EventID()); err == nil {
		event = stored.JSON
	}
	answer := map[string]any{
		"event":           event,
		"state":           pduJSONs(res.State),
		"auth_chain":      pduJSONs(res.AuthChain),
		"origin":          s.cfg.ServerName,
		"members_omitted": res.MembersOmitted,
	}
	if res.MembersOmitted {
		answer["servers_in_room"] = res.ServersInRoom
	}
	return answer, nil
}

// announceDevices queues m.device_list_update for the room's local members to origin, whose
// user joined the room through this server: origin starts sharing the room with them and
// learns their devices without waiting for one to change. A failure is logged; the join
// stands.
func (s *Server) announceDevices(ctx context.Context, origin spec.ServerName, roomID string) {
	members, err := s.rs.JoinedMembers(ctx, roomID)
	if err != nil {
		s.log.Error("members for device list updates", "room_id", roomID, "destination", origin, "err", err)
		return
	}
	local := members[:0]
	for _, u := range members {
		if s.isLocalUser(u) {
			local = append(local, u)
		}
	}
	s.EDUSender().DeviceListsTo(ctx, string(origin), local)
}

// handleSendLeave handles PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}.
func (s *Server) handleSendLeave(r *http.Request) (any, error) {
	ctx := r.Context()
	pdu, err := s.receiveMembership(r, spec.Leave)
	if err != nil {
		return nil, err
	}
	if _, err := s.rs.SendMembership(ctx, request(ctx).Origin(), spec.Leave, pdu); err != nil {
		return nil, membershipError(err)
	}
	return struct{}{}, nil
}

// handleSendLeaveV1 handles PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}: v2's
// checks, answered [200, {}] as v1 was (removed from the spec in v1.18, still called).
func (s *Server) handleSendLeaveV1(r *http.Request) (any, error) {
	res, err := s.handleSendLeave(r)
	if err != nil {
		return nil, err
	}
	return []any{http.StatusOK, res}, nil
}

// handleSendKnock handles PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}.
func (s *Server) handleSendKnock(r *http.Request) (any, error) {
	ctx := r.Context()
	pdu, err := s.receiveMembership(r, spec.Knock)
	if err != nil {
		return nil, err
	}
	res, err := s.rs.SendMembership(ctx, request(ctx).Origin(), spec.Knock, pdu)
	if err != nil {
		return nil, membershipError(err)
	}
	return map[string]any{"knock_room_state": pduJSONs(res.State)}, nil
}

// receiveMembership parses and checks the body of a send_* request, as the spec says
// (M_INVALID_PARAM otherwise): a PDU of the room's version with valid signatures, the event
// of the path, in the room of the path, an m.room.member event of the given membership whose
// state_key is its sender, a user of the requesting server.
func (s *Server) receiveMembership(r *http.Request, membership string) (gomatrixserverlib.PDU, error) {
	ctx := r.Context()
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	ver, err := s.rs.StoredRoomVersion(ctx, roomID)
	if err != nil {
		return nil, err
	}
	raw := request(ctx).Content()
	if membership == spec.Join {
		raw = s.signAuthorisedJoin(ver, raw)
	}
	pdu, err := s.checkPDU(ctx, ver, raw)
	if err != nil {
		return nil, spec.InvalidParam(err.Error())
	}
	if err := checkMembershipEvent(pdu, roomID, httputil.PathVar(r, "eventId"), membership); err != nil {
		return nil, err
	}
	if sk := pdu.StateKey(); *sk != string(pdu.SenderID()) {
		return nil, spec.InvalidParam("the state_key is not the sender")
	}
	if !isUserOf(string(pdu.SenderID()), request(ctx).Origin()) {
		return nil, spec.InvalidParam("the sender is not a user of the requesting server")
	}
	return pdu, nil
}

// signAuthorisedJoin adds this server's signature to a join whose
// join_authorised_via_users_server names one of its users: the resident server that
// authorised a restricted join signs it (server-server API "Restricted rooms"), and the auth
// rules require that signature, so the join could not pass the signature check without it.
// The roomserver checks the join may be authorised (roomserver.Server.SendMembership) before
// the signed event is stored or returned. Anything else is returned unchanged, for checkPDU
// to judge.
func (s *Server) signAuthorisedJoin(ver gomatrixserverlib.IRoomVersion, raw []byte) []byte {
	pdu, err := parsePDU(ver, raw)
	if err != nil || pdu.Type() != spec.MRoomMember {
		return raw
	}
	via := gjson.GetBytes(pdu.Content(), "join_authorised_via_users_server")
	if m, err := pdu.Membership(); err != nil || m != spec.Join || !via.Exists() || !s.isLocalUser(via.String()) {
		return raw
	}
	return pdu.Sign(string(s.cfg.ServerName), s.cfg.KeyID, s.cfg.PrivateKey).JSON()
}

// checkMembershipEvent checks that pdu is the event eventID of roomID and an m.room.member
// event of the given membership.
func checkMembershipEvent(pdu gomatrixserverlib.PDU, roomID, eventID, membership string) error {
	if pdu.RoomID().String() != roomID {
		return spec.InvalidParam("the event is not in the room of the path")
	}
	if pdu.EventID() != eventID {
		return spec.InvalidParam("the event ID is not the one of the path")
	}
	if pdu.Type() != spec.MRoomMember || pdu.StateKey() == nil {
		return spec.InvalidParam("the event is not an m.room.member event")
	}
	if m, err := pdu.Membership(); err != nil || m != membership {
		return spec.InvalidParam("the membership is not " + membership)
	}
	return nil
}

// handleInvite handles PUT /_matrix/federation/v2/invite/{roomId}/{eventId}: another server
// asks us to countersign an invite of one of our users.
func (s *Server) handleInvite(r *http.Request) (any, error) {
	ctx := r.Context()
	origin := request(ctx).Origin()
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	var body struct {
		RoomVersion string            `json:"room_version"`
		Event       json.RawMessage   `json:"event"`
		State       []json.RawMessage `json:"invite_room_state"`
	}
	if err := httputil.UnmarshalObject(request(ctx).Content(), &body); err != nil {
		return nil, err
	}
	if body.RoomVersion == "" || len(body.Event) == 0 {
		return nil, spec.MissingParam("room_version and event are required")
	}
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(body.RoomVersion))
	if err != nil {
		return nil, incompatibleVersion(body.RoomVersion)
	}
	// The signature check of an invite wants the invitee's server's signature too: ours,
	// added before the check and sent back only if the invite passes.
	unsigned, err := parsePDU(ver, body.Event)
	if err != nil {
		return nil, spec.InvalidParam("invalid PDU: " + err.Error())
	}
	signed := unsigned.Sign(string(s.cfg.ServerName), s.cfg.KeyID, s.cfg.PrivateKey)
	pdu, err := s.checkPDU(ctx, ver, signed.JSON())
	if err != nil {
		return nil, spec.InvalidParam(err.Error())
	}
	if err := checkMembershipEvent(pdu, roomID, httputil.PathVar(r, "eventId"), spec.Invite); err != nil {
		return nil, err
	}
	if !isUserOf(string(pdu.SenderID()), origin) {
		return nil, spec.InvalidParam("the sender is not a user of the requesting server")
	}
	if !s.isLocalUser(*pdu.StateKey()) {
		return nil, spec.InvalidParam("the invitee is not a user of this server")
	}
	if s.rs.InvitePermissions(ctx, *pdu.StateKey()).Verdict(string(pdu.SenderID())) == roomserver.InviteBlock {
		return nil, roomserver.ErrInviteBlocked
	}
	stripped, err := s.inviteRoomState(r, ver, roomID, body.State)
	if err != nil {
		return nil, err
	}
	if err := s.rs.ReceiveInvite(ctx, pdu, stripped); err != nil {
		return nil, membershipError(err)
	}
	return map[string]any{"event": json.RawMessage(pdu.JSON())}, nil
}

// inviteRoomState checks invite_room_state as the spec says since v1.16: signed PDUs of the
// room's version, in the invite's room. An entry that is a PDU (it has signatures) and fails
// these checks makes the invite M_INVALID_PARAM in room versions after 11, and is dropped
// with a warning in versions 1 to 11, which predate the rule. Entries in the older stripped
// format (type, state_key, content, sender; what this server still sends, as
// roomserver.Remote's Invite takes stripped state) are kept, with a warning when they are
// not even that; so is an answer without the m.room.create event the spec now requires.
func (s *Server) inviteRoomState(r *http.Request, ver gomatrixserverlib.IRoomVersion, roomID string, raws []json.RawMessage) ([]gomatrixserverlib.InviteStrippedState, error) {
	ctx := r.Context()
	origin := string(request(ctx).Origin())
	strict := !legacyRoomVersions[ownedstate.Base(ver.Version())]
	var out []gomatrixserverlib.InviteStrippedState
	for _, raw := range raws {
		var probe struct {
			Signatures json.RawMessage `json:"signatures"`
		}
		if json.Unmarshal(raw, &probe) == nil && probe.Signatures == nil {
			var ss gomatrixserverlib.InviteStrippedState
			if json.Unmarshal(raw, &ss) != nil || ss.Type() == "" || ss.StateKey() == nil {
				s.log.Warn("dropped an invalid invite_room_state entry", "room_id", roomID, "origin", origin)
				continue
			}
			out = append(out, ss)
			continue
		}
		pdu, err := s.checkPDU(ctx, ver, raw)
		if err == nil && pdu.RoomID().String() != roomID {
			err = errors.New("the event is in another room")
		}
		if err == nil {
			out = append(out, gomatrixserverlib.NewInviteStrippedState(pdu))
			continue
		}
		if strict {
			return nil, spec.InvalidParam("invite_room_state: " + err.Error())
		}
		s.log.Warn("dropped an invalid invite_room_state entry", "room_id", roomID, "origin", origin, "err", err)
	}
	hasCreate := false
	for _, ss := range out {
		hasCreate = hasCreate || ss.Type() == spec.MRoomCreate
	}
	if !hasCreate {
		s.log.Warn("invite_room_state without the m.room.create event", "room_id", roomID, "origin", origin)
	}
	return out, nil
}

// legacyRoomVersions are the room versions that predate the format rules of
// invite_room_state.
var legacyRoomVersions = map[gomatrixserverlib.RoomVersion]bool{
	"1": true, "2": true, "3": true, "4": true, "5": true, "6": true,
	"7": true, "8": true, "9": true, "10": true, "11": true,
}

// isUserOf reports whether userID is a well-formed user ID of server.
func isUserOf(userID string, server spec.ServerName) bool {
	u, err := spec.NewUserID(userID, true)
	return err == nil && u.Domain() == server
}

// incompatibleVersion is the spec's M_INCOMPATIBLE_ROOM_VERSION, with the room's version.
func incompatibleVersion(version string) *httputil.Error {
	e := httputil.Errorf(http.StatusBadRequest, string(spec.ErrorIncompatibleRoomVersion),
		"this server does not support room version %s", version)
	e.Extra = map[string]any{"room_version": version}
	return e
}

// membershipError maps the roomserver's M_INCOMPATIBLE_ROOM_VERSION (which carries the room
// version outside MatrixError) to a response that keeps it; other errors pass unchanged.
func membershipError(err error) error {
	var ive spec.IncompatibleRoomVersionError
	if errors.As(err, &ive) {
		e := incompatibleVersion(ive.RoomVersion)
		e.Msg = ive.Err
		return e
	}
	return err
}

// pduJSONs returns the JSON of pdus.
func pduJSONs(pdus []gomatrixserverlib.PDU) []json.RawMessage {
	out := make([]json.RawMessage, len(pdus))
	for i, p := range pdus {
		out[i] = p.JSON()
	}
	return out
}

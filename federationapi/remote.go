package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/netguard"
	"github.com/lattice-chat/lattice/roomserver"
)

// remote implements roomserver.Remote with the outbound federation client: every PDU it
// returns has passed checkPDU (a valid event of the room version, valid signatures, and
// redacted when its content hash does not match). PDUs that fail are dropped, as the spec
// says of PDUs that fail these checks, and logged.
type remote struct {
	s *Server
}

func (r *remote) origin() spec.ServerName { return r.s.cfg.ServerName }

// MissingEvents implements roomserver.Remote (POST /get_missing_events), oldest first.
func (r *remote) MissingEvents(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, roomID string, earliest, latest []string, limit int, minDepth int64) ([]gomatrixserverlib.PDU, error) {
	res, err := r.s.client.fc.LookupMissingEvents(ctx, r.origin(), server, roomID, fclient.MissingEvents{
		Limit: limit, MinDepth: int(minDepth), EarliestEvents: earliest, LatestEvents: latest,
	}, ver.Version())
	if err != nil {
		return nil, remoteError(fmt.Sprintf("get_missing_events in %s from %s", roomID, server), err)
	}
	pdus := r.checkAll(ctx, server, ver, roomID, rawJSONs(res.Events))
	sort.SliceStable(pdus, func(i, j int) bool { return pdus[i].Depth() < pdus[j].Depth() })
	return pdus, nil
}

// StateIDs implements roomserver.Remote (GET /state_ids).
func (r *remote) StateIDs(ctx context.Context, server spec.ServerName, roomID, eventID string) (state, authChain []string, err error) {
	res, err := r.s.client.fc.LookupStateIDs(ctx, r.origin(), server, roomID, eventID)
	if err != nil {
		return nil, nil, remoteError(fmt.Sprintf("state_ids of %s from %s", eventID, server), err)
	}
	return res.StateEventIDs, res.AuthEventIDs, nil
}

// Event implements roomserver.Remote (GET /event).
func (r *remote) Event(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, eventID string) (gomatrixserverlib.PDU, error) {
	txn, err := r.s.client.fc.GetEvent(ctx, r.origin(), server, eventID)
	if err != nil {
		return nil, remoteError(fmt.Sprintf("event %s from %s", eventID, server), err)
	}
	for _, raw := range txn.PDUs {
		pdu, err := r.s.checkPDU(ctx, ver, raw)
		if err != nil {
			return nil, fmt.Errorf("event %s from %s: %w", eventID, server, err)
		}
		if pdu.EventID() == eventID {
			return pdu, nil
		}
	}
	return nil, fmt.Errorf("event %s from %s: not in the answer", eventID, server)
}

// EventAuth implements roomserver.Remote (GET /event_auth).
func (r *remote) EventAuth(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, roomID, eventID string) ([]gomatrixserverlib.PDU, error) {
	res, err := r.s.client.fc.GetEventAuth(ctx, r.origin(), server, ver.Version(), roomID, eventID)
	if err != nil {
		return nil, remoteError(fmt.Sprintf("event_auth of %s from %s", eventID, server), err)
	}
	return r.checkAll(ctx, server, ver, roomID, rawJSONs(res.AuthEvents)), nil
}

// Backfill implements roomserver.Remote (GET /backfill).
func (r *remote) Backfill(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, roomID string, from []string, limit int) ([]gomatrixserverlib.PDU, error) {
	txn, err := r.s.client.fc.Backfill(ctx, r.origin(), server, roomID, limit, from)
	if err != nil {
		return nil, remoteError(fmt.Sprintf("backfill of %s from %s", roomID, server), err)
	}
	return r.checkAll(ctx, server, ver, roomID, txn.PDUs), nil
}

// checkAll runs checkPDU on each raw PDU of an answer from server and keeps those that pass
// and are in roomID.
func (r *remote) checkAll(ctx context.Context, server spec.ServerName, ver gomatrixserverlib.IRoomVersion, roomID string, raws []json.RawMessage) []gomatrixserverlib.PDU {
	out := make([]gomatrixserverlib.PDU, 0, len(raws))
	for _, raw := range raws {
		pdu, err := r.s.checkPDU(ctx, ver, raw)
		if err == nil && pdu.RoomID().String() != roomID {
			err = fmt.Errorf("event %s is in room %s", pdu.EventID(), pdu.RoomID())
		}
		if err != nil {
			r.s.log.Warn("dropped a PDU from another server", "destination", string(server), "room_id", roomID, "err", err)
			continue
		}
		out = append(out, pdu)
	}
	return out
}

// rawJSONs converts gomatrixserverlib's event list.
func rawJSONs(evs gomatrixserverlib.EventJSONs) []json.RawMessage {
	out := make([]json.RawMessage, len(evs))
	for i, e := range evs {
		out[i] = json.RawMessage(e)
	}
	return out
}

// Invite implements roomserver.Remote (PUT /invite, v2): the invitee's server returns the
// event with its signature, which checkPDU requires of an invite.
func (r *remote) Invite(ctx context.Context, ver gomatrixserverlib.IRoomVersion, event gomatrixserverlib.PDU, strippedState []gomatrixserverlib.InviteStrippedState) (gomatrixserverlib.PDU, error) {
	if event.StateKey() == nil {
		return nil, errors.New("invite without a state_key")
	}
	invitee, err := spec.NewUserID(*event.StateKey(), true)
	if err != nil {
		return nil, fmt.Errorf("invite of %q: %w", *event.StateKey(), err)
	}
	req, err := fclient.NewInviteV2Request(event, strippedState)
	if err != nil {
		return nil, fmt.Errorf("invite request: %w", err)
	}
	res, err := r.s.client.fc.SendInviteV2(ctx, r.origin(), invitee.Domain(), req)
	if err != nil {
		return nil, remoteError(fmt.Sprintf("invite of %s", invitee), err)
	}
	signed, err := r.s.checkPDU(ctx, ver, res.Event)
	if err != nil {
		return nil, fmt.Errorf("invite of %s: %w", invitee, err)
	}
	if signed.EventID() != event.EventID() {
		return nil, fmt.Errorf("invite of %s: %s returned another event (%s)", invitee, invitee.Domain(), signed.EventID())
	}
	return signed, nil
}

// remoteError describes a failed request to another server. A Matrix error the server
// answered with (M_FORBIDDEN, M_NOT_FOUND...) is kept as a spec.MatrixError, with what was
// asked, so that it can reach the client that caused the request.
func remoteError(what string, err error) error {
	var he gomatrix.HTTPError
	if errors.As(err, &he) && he.Code >= 400 && he.Code < 500 {
		var me spec.MatrixError
		if json.Unmarshal(he.Contents, &me) == nil && me.ErrCode != "" {
			me.Err = fmt.Sprintf("%s: %s", what, me.Err)
			return me
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// unreachable is what a client sees when the request it caused to server failed without an
// answer meant for it (no connection, a blocked address, a broken or unexpected answer):
// 502 M_UNKNOWN naming the server and nothing more, since a network error would tell an
// open port from a closed one, or a blocked address from a public one. The cause is logged.
func (s *Server) unreachable(server spec.ServerName, what string, err error) error {
	s.log.Warn(what+" failed", "destination", server, "err", err)
	return httputil.Errorf(http.StatusBadGateway, "M_UNKNOWN", "could not reach %s", server)
}

// Join implements roomserver.Remote: make_join and send_join through the first of servers
// that completes them (gomatrixserverlib.PerformJoin, which checks the send_join answer: the
// signatures of the state and auth chain, their auth events, and that the join is allowed by
// both). The join event the resident server returns is checked too, as it may carry its
// signature (restricted joins).
func (r *remote) Join(ctx context.Context, servers []spec.ServerName, roomID, userID string, content map[string]any) (*roomserver.JoinResult, error) {
	user, err := spec.NewUserID(userID, true)
	if err != nil {
		return nil, spec.InvalidParam("invalid user ID")
	}
	room, err := spec.NewRoomID(roomID)
	if err != nil {
		return nil, spec.InvalidParam("invalid room ID")
	}
	lastErr := errors.New("no server to join through")
	for _, server := range servers {
		if server == r.origin() {
			continue
		}
		res, err := r.joinVia(ctx, server, user, room, content)
		if err == nil {
			return res, nil
		}
		r.s.log.Warn("join through another server failed", "destination", string(server), "room_id", roomID, "user_id", userID, "err", err)
		lastErr = err
	}
	return nil, lastErr
}

// joinVia joins through one server.
func (r *remote) joinVia(ctx context.Context, server spec.ServerName, user *spec.UserID, room *spec.RoomID, content map[string]any) (*roomserver.JoinResult, error) {
	c := make(map[string]any, len(content)+1)
	for k, v := range content {
		c[k] = v
	}
	jc := joinClient{fc: r.s.client.fc, answer: new(fclient.RespSendJoin), fullState: !r.s.cfg.PartialStateJoins}
	res, ferr := gomatrixserverlib.PerformJoin(ctx, jc, gomatrixserverlib.PerformJoinInput{
		UserID: user, RoomID: room, ServerName: server, Content: c,
		PrivateKey: r.s.cfg.PrivateKey, KeyID: r.s.cfg.KeyID, KeyRing: r.s.keyRing,
		EventProvider: func(v gomatrixserverlib.RoomVersion, ids []string) ([]gomatrixserverlib.PDU, error) {
			return r.fetchEvents(ctx, server, v, ids)
		},
		UserIDQuerier: userIDForSender,
	})
	if ferr != nil {
		return nil, remoteError("join of "+room.String()+" through "+string(server), ferr.Err)
	}
	ver, err := gomatrixserverlib.GetRoomVersion(res.JoinEvent.Version())
	if err != nil {
		return nil, err
	}
	event, err := r.s.checkPDU(ctx, ver, res.JoinEvent.JSON())
	if err != nil {
		return nil, fmt.Errorf("join event from %s: %w", server, err)
	}
	// The state and the auth chain passed PerformJoin's signature checks: parsing them again
	// as untrusted PDUs checks their format and hashes, as checkPDU would.
	state, err := parseChecked(ver, res.StateSnapshot.GetStateEvents())
	if err != nil {
		return nil, fmt.Errorf("send_join state from %s: %w", server, err)
	}
	authChain, err := parseChecked(ver, res.StateSnapshot.GetAuthEvents())
	if err != nil {
		return nil, fmt.Errorf("send_join auth chain from %s: %w", server, err)
	}
	state = r.restoreOwnedState(ctx, ver, jc.answer, state, authChain)
	res2 := &roomserver.JoinResult{Version: ver, Event: event, State: state, AuthChain: authChain, Via: server}
	if jc.answer.MembersOmitted {
		// A partial state answer (MSC3706): the roomserver resyncs the rest in the
		// background from server and the others of servers_in_room.
		res2.MembersOmitted = true
		res2.ServersInRoom = serversInRoom(jc.answer.ServersInRoom)
		if len(res2.ServersInRoom) == 0 {
			res2.ServersInRoom = []string{string(server)}
		}
	}
	return res2, nil
}

// maxServersInRoom bounds the servers_in_room of a partial state answer that this server
// keeps: every event, typing notice, receipt and device-list update of the room goes to each
// of them until the resync completes, so that a resident naming a hundred thousand would
// make this server send to all of them.
const maxServersInRoom = 5000

// serversInRoom is the valid server names of a servers_in_room list, each once, at most
// maxServersInRoom of them.
func serversInRoom(names []string) []string {
	seen := make(map[string]bool, min(len(names), maxServersInRoom))
	out := make([]string, 0, min(len(names), maxServersInRoom))
	for _, n := range names {
		if len(out) == maxServersInRoom {
			break
		}
		if seen[n] || !netguard.ValidServerName(n) {
			continue
		}
		seen[n] = true
		out = append(out, n)
	}
	return out
}

// fetchEvents fetches events that a send_join answer's auth events name but do not include.
func (r *remote) fetchEvents(ctx context.Context, server spec.ServerName, v gomatrixserverlib.RoomVersion, ids []string) ([]gomatrixserverlib.PDU, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(v)
	if err != nil {
		return nil, err
	}
	out := make([]gomatrixserverlib.PDU, 0, len(ids))
	for _, id := range ids {
		pdu, err := r.Event(ctx, server, ver, id)
		if err != nil {
			return nil, err
		}
		out = append(out, pdu)
	}
	return out, nil
}

// parseChecked parses events whose signatures were checked.
func parseChecked(ver gomatrixserverlib.IRoomVersion, evs gomatrixserverlib.EventJSONs) ([]gomatrixserverlib.PDU, error) {
	out := make([]gomatrixserverlib.PDU, 0, len(evs))
	for _, raw := range evs {
		pdu, err := parsePDU(ver, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, pdu)
	}
	return out, nil
}

// joinClient adapts the federation client to what PerformJoin calls.
type joinClient struct {
	fc     fclient.FederationClient
	answer *fclient.RespSendJoin // the last send_join answer, as received (restoreOwnedState)
	// fullState asks send_join for the full state (without omit_members).
	fullState bool
}

// MakeJoin implements gomatrixserverlib.FederatedJoinClient.
func (c joinClient) MakeJoin(ctx context.Context, origin, s spec.ServerName, roomID, userID string) (gomatrixserverlib.MakeJoinResponse, error) {
	res, err := c.fc.MakeJoin(ctx, origin, s, roomID, userID)
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// SendJoin implements gomatrixserverlib.FederatedJoinClient: send_join v2 with
// omit_members=true (a partial state join, MSC3706) unless full state is asked for; a
// resident server that does not support it answers with the full state.
func (c joinClient) SendJoin(ctx context.Context, origin, s spec.ServerName, event gomatrixserverlib.PDU) (gomatrixserverlib.SendJoinResponse, error) {
	send := c.fc.SendJoinPartialState
	if c.fullState {
		send = c.fc.SendJoin
	}
	res, err := send(ctx, origin, s, event)
	if err != nil {
		return nil, err
	}
	if res.MembersOmitted {
		// With omit_members the auth chain may leave out what the state holds (MSC3706),
		// the create event among them, which PerformJoin's checks look for in the auth
		// chain: the state is added to it for those checks.
		res.AuthEvents = withStateInAuthChain(res.AuthEvents, res.StateEvents)
	}
	*c.answer = res
	return &res, nil
}

// withStateInAuthChain returns the auth chain with the state events it lacks appended.
func withStateInAuthChain(auth, state gomatrixserverlib.EventJSONs) gomatrixserverlib.EventJSONs {
	seen := make(map[string]bool, len(auth))
	for _, raw := range auth {
		seen[string(raw)] = true
	}
	out := append(gomatrixserverlib.EventJSONs(nil), auth...)
	for _, raw := range state {
		if !seen[string(raw)] {
			seen[string(raw)] = true
			out = append(out, raw)
		}
	}
	return out
}

// Leave implements roomserver.Remote: make_leave through the first of servers that answers
// with a valid template, then the signed leave event with send_leave to the same server.
func (r *remote) Leave(ctx context.Context, servers []spec.ServerName, roomID, userID string) (gomatrixserverlib.PDU, error) {
	lastErr := errors.New("no server to leave through")
	for _, server := range servers {
		if server == r.origin() {
			continue
		}
		pdu, err := r.leaveVia(ctx, server, roomID, userID)
		if err == nil {
			return pdu, nil
		}
		r.s.log.Warn("leave through another server failed", "destination", string(server), "room_id", roomID, "user_id", userID, "err", err)
		lastErr = err
	}
	return nil, lastErr
}

// leaveVia leaves through one server: the template must be an m.room.member leave of
// userID in roomID (the checks the spec asks of make_join's template).
func (r *remote) leaveVia(ctx context.Context, server spec.ServerName, roomID, userID string) (gomatrixserverlib.PDU, error) {
	what := fmt.Sprintf("leave of %s through %s", roomID, server)
	res, err := r.s.client.fc.MakeLeave(ctx, r.origin(), server, roomID, userID)
	if err != nil {
		return nil, remoteError(what, err)
	}
	version := res.RoomVersion
	if version == "" {
		version = gomatrixserverlib.RoomVersionV1 // the spec: "1" or "2" when not given
	}
	ver, err := gomatrixserverlib.GetRoomVersion(version)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	proto := res.LeaveEvent
	var content struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(proto.Content, &content)
	if proto.Type != spec.MRoomMember || proto.RoomID != roomID || proto.SenderID != userID ||
		proto.StateKey == nil || *proto.StateKey != userID || content.Membership != spec.Leave {
		return nil, fmt.Errorf("%s: the template is not a leave of %s", what, userID)
	}
	proto.Redacts = ""
	if err := proto.SetUnsigned(struct{}{}); err != nil {
		return nil, err
	}
	pdu, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(r.s.cfg.Now(), r.origin(), r.s.cfg.KeyID, r.s.cfg.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("%s: build: %w", what, err)
	}
	if err := r.s.client.fc.SendLeave(ctx, r.origin(), server, pdu); err != nil {
		return nil, remoteError(what, err)
	}
	return pdu, nil
}

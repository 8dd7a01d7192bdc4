package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/sjson"

	"github.com/lattice-chat/lattice/storage"
)

// resident reports whether this server is in room r: it holds the room's state and one of
// its users is joined. Only a resident server can build events of the room by itself.
func (s *Server) resident(r *room) bool {
	if !s.hasState(r) {
		return false
	}
	for u, m := range r.members {
		if m == spec.Join && s.isLocal(u) {
			return true
		}
	}
	return false
}

// residentStored is resident read from the database, without the room lock: whether this
// server holds the room's state and one of its users is joined.
func (s *Server) residentStored(ctx context.Context, roomID string) (bool, error) {
	room, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if _, err := s.db.CurrentStateEvent(ctx, room.NID, storage.StateKey{Type: spec.MRoomCreate}); errors.Is(err, storage.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	joined, err := s.db.RoomMembers(ctx, room.NID, spec.Join)
	if err != nil {
		return false, err
	}
	for _, m := range joined {
		if s.isLocal(m.UserID) {
			return true, nil
		}
	}
	return false, nil
}

// JoinVia makes userID join a room: locally when this server is in the room, else through
// another server (make_join/send_join) among via, the servers a remote alias names, the
// server of whoever invited the user and the servers of the room's last known members.
// extra is the body of the client's join request: its fields (reason, and any other a client
// or bridge adds, as the reference server allows) go into the member event's content, over
// the user's profile, except those the server decides.
func (s *Server) JoinVia(ctx context.Context, userID, roomIDOrAlias string, extra map[string]any, via []string) (string, error) {
	var servers []spec.ServerName
	for _, v := range via {
		servers = append(servers, spec.ServerName(v))
	}
	roomID := roomIDOrAlias
	if strings.HasPrefix(roomIDOrAlias, "#") && s.remote != nil && !s.isLocalAlias(roomIDOrAlias) {
		id, aliasServers, err := s.remote.QueryAlias(ctx, roomIDOrAlias)
		if err != nil {
			return "", err
		}
		roomID, servers = id, append(servers, aliasServers...)
	} else {
		var err error
		if roomID, err = s.ResolveRoom(ctx, roomIDOrAlias); err != nil {
			return "", err
		}
	}
	if err := s.checkNotBlocked(ctx, roomID); err != nil {
		return "", err
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil && !errors.Is(err, errUnknownRoom) {
		return "", err
	}
	if err == nil {
		var grantErr error
		if s.resident(r) || s.remote == nil {
			_, err := s.submitMember(ctx, r, userID, userID, s.joinContent(ctx, userID, extra))
			if !isUnableToGrant(err) || s.remote == nil {
				r.unlock()
				if err != nil {
					return "", err
				}
				return roomID, nil
			}
			// A restricted join that no user of this server may authorise: another
			// resident server may have one who can (server-server API "Restricted rooms").
			grantErr = err
		}
		servers = append(servers, s.joinCandidates(ctx, r, userID)...)
		r.unlock()
		if grantErr != nil && len(dedupServers(servers, s.cfg.ServerName)) == 0 {
			return "", grantErr
		}
	} else if s.remote == nil {
		return "", err
	}
	if i := strings.IndexByte(roomID, ':'); i >= 0 {
		servers = append(servers, spec.ServerName(roomID[i+1:]))
	}
	servers = dedupServers(servers, s.cfg.ServerName)
	if len(servers) == 0 {
		return "", spec.NotFound("no server to join the room through: give one with server_name or via")
	}
	res, err := s.remote.Join(ctx, servers, roomID, userID, s.joinContent(ctx, userID, extra))
	if err != nil {
		var me spec.MatrixError
		if errors.As(err, &me) {
			return "", me
		}
		s.log.Warn("remote join failed", "room_id", roomID, "user_id", userID, "servers", servers, "err", err)
		return "", spec.NotFound("could not join the room through any server") // the cause is logged, not told
	}
	if err := s.importJoin(ctx, roomID, res); err != nil {
		return "", err
	}
	return roomID, nil
}

// joinContent is the content of userID's join: the profile, then the client's extra fields,
// less those that are not the client's to set (membership; the authorising user of a
// restricted join; third_party_signed, which is a parameter of the request).
func (s *Server) joinContent(ctx context.Context, userID string, extra map[string]any) map[string]any {
	content := s.memberContent(ctx, userID, spec.Join, "")
	for k, v := range extra {
		switch k {
		case "membership", authorisedViaKey, "third_party_signed":
		default:
			content[k] = v
		}
	}
	return content
}

func (s *Server) isLocalAlias(alias string) bool {
	i := strings.IndexByte(alias, ':')
	return i >= 0 && spec.ServerName(alias[i+1:]) == s.cfg.ServerName
}

// joinCandidates returns the servers that may let userID into room r: the server of the
// user's inviter, then the servers of the members this server last knew joined.
func (s *Server) joinCandidates(ctx context.Context, r *room, userID string) []spec.ServerName {
	var out []spec.ServerName
	if knid, err := s.lookupStateKeyNID(ctx, storage.StateKey{Type: spec.MRoomMember, StateKey: userID}); err == nil && knid != 0 {
		if ms, err := s.db.RoomMembers(ctx, r.nid, ""); err == nil {
			for _, m := range ms {
				if m.UserID == userID && m.EventNID != 0 {
					if evs, err := s.db.EventsByNID(ctx, []int64{m.EventNID}); err == nil && len(evs) == 1 {
						out = append(out, spec.ServerName(serverOf(evs[0].Sender)))
					}
				}
			}
		}
	}
	for u, m := range r.members {
		if m == spec.Join {
			out = append(out, spec.ServerName(serverOf(u)))
		}
	}
	return out
}

func dedupServers(in []spec.ServerName, self spec.ServerName) []spec.ServerName {
	seen := map[spec.ServerName]bool{self: true, "": true}
	var out []spec.ServerName
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// importJoin stores a join made through another server: the auth chain and the state from
// the send_join answer as outliers, the state before the join as a snapshot, and the join
// event itself as the room's only forward extremity, with the current state after it.
func (s *Server) importJoin(ctx context.Context, roomID string, res *JoinResult) error {
	// The room row first, so that the room can be locked.
	if err := s.ensureRoomRow(ctx, roomID, res.Version.Version()); err != nil {
		return err
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.unlock()
	if r.version.Version() != res.Version.Version() {
		return fmt.Errorf("room %s: stored version %s, joined version %s", roomID, r.version.Version(), res.Version.Version())
	}
	if s.resident(r) {
		// Another local user's join completed meanwhile: this join is one more event of a
		// room this server is in.
		budget := maxFetchTotal
		return s.inputRemote(ctx, r, remoteInput{origin: res.Via, pdu: res.Event, budget: &budget})
	}
	// Outliers: every event of the auth chain and the state. CheckSendJoinResponse has
	// checked them against their auth events.
	all := append(append([]gomatrixserverlib.PDU(nil), res.AuthChain...), res.State...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Depth() < all[j].Depth() })
	for _, p := range all {
		if p.RoomID().String() != roomID {
			continue
		}
		if err := s.insertBare(ctx, r, p, storage.StatusOutlier, 0); err != nil {
			return err
		}
	}
	state := map[int64]int64{}
	for _, p := range res.State {
		if p.StateKey() == nil {
			continue
		}
		ev, err := s.db.Event(ctx, p.EventID())
		if err != nil {
			return fmt.Errorf("state event %s: %w", p.EventID(), err)
		}
		state[ev.StateKeyNID] = ev.NID
	}
	before, err := s.insertWholeSnapshot(ctx, r, state)
	if err != nil {
		return err
	}
	// The join event enters as a timeline event after that state. A partial state join
	// records the room as partial in the same transaction, and its resync starts.
	var partial *storage.PartialStateRoom
	if res.MembersOmitted {
		partial = &storage.PartialStateRoom{
			RoomNID: r.nid, RoomID: roomID, JoinEventID: res.Event.EventID(), JoinedVia: string(res.Via),
			ServersInRoom: res.ServersInRoom, CreatedTS: s.now().UnixMilli(),
		}
	}
	if err := s.persistJoined(ctx, r, res.Event, before, state, partial); err != nil {
		r.loaded = false // reloaded from the database by the next lockRoom
		return err
	}
	if partial != nil {
		s.log.Info("joined with partial state; resync started", "room_id", roomID, "event_id", res.Event.EventID(), "destination", string(res.Via), "state_events", len(res.State))
		s.startResync(roomID)
	}
	return nil
}

// ensureRoomRow creates the row of a room this server learns of from another server (a
// join, an invite), without state, so that the room can be locked.
func (s *Server) ensureRoomRow(ctx context.Context, roomID string, ver gomatrixserverlib.RoomVersion) error {
	if _, err := s.db.Room(ctx, roomID); !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return s.db.WithTx(ctx, func(tx *storage.Tx) error {
		_, err := tx.InsertRoom(ctx, roomID, string(ver), s.now().UnixMilli())
		if errors.Is(err, storage.ErrConflict) {
			return nil
		}
		return err
	})
}

// persistJoined stores the join event of a remote join as the room's new head.
func (s *Server) persistJoined(ctx context.Context, r *room, join gomatrixserverlib.PDU, beforeNID int64, before map[int64]int64, partial *storage.PartialStateRoom) error {
	var ev *storage.Event
	var after map[int64]int64
	var snapAfter int64
	var key storage.StateKey
	var keyNID int64
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.LockEventStream(ctx); err != nil {
			return err
		}
		if err := tx.HideOutOfRoomEvents(ctx, r.nid); err != nil {
			return err
		}
		key = storage.StateKey{Type: spec.MRoomMember, StateKey: *join.StateKey()}
		var err error
		if keyNID, err = s.stateKeyNID(ctx, tx, key); err != nil {
			return err
		}
		ev = &storage.Event{
			EventID: join.EventID(), RoomNID: r.nid, Type: join.Type(), Sender: string(join.SenderID()),
			Depth: join.Depth(), OriginTS: int64(join.OriginServerTS()), StateBeforeNID: beforeNID,
			StateKeyNID: keyNID, ReplacesNID: before[keyNID], JSON: join.JSON(),
		}
		if _, err := tx.InsertEvent(ctx, ev); err != nil {
			return err
		}
		after = copyState(before)
		after[keyNID] = ev.NID
		if snapAfter, err = tx.InsertSnapshot(ctx, r.nid, storage.Snapshot{Parent: beforeNID, ChainLen: 2, Entries: map[int64]int64{keyNID: ev.NID}}); err != nil {
			return err
		}
		// The current state is replaced whole: first clear what an older view held.
		old, err := tx.CurrentStateEvents(ctx, r.nid, "")
		if err != nil {
			return err
		}
		changes := map[int64]int64{}
		for _, o := range old {
			changes[o.StateKeyNID] = 0
		}
		for k, v := range after {
			changes[k] = v
		}
		if err := tx.SetCurrentState(ctx, r.nid, changes); err != nil {
			return err
		}
		nids := make([]int64, 0, len(after))
		for _, v := range after {
			nids = append(nids, v)
		}
		s.pdus.put(ev.NID, join)
		m, err := s.pdusFrom(ctx, tx, r.version, nids)
		if err != nil {
			return err
		}
		for nid, p := range m {
			if p.Type() != spec.MRoomMember || p.StateKey() == nil {
				continue
			}
			membership, err := p.Membership()
			if err != nil {
				continue
			}
			if err := tx.SetMembership(ctx, r.nid, *p.StateKey(), membership, nid); err != nil {
				return err
			}
		}
		if err := tx.SetForwardExtremities(ctx, r.nid, []int64{ev.NID}); err != nil {
			return err
		}
		if partial != nil {
			if err := tx.InsertPartialStateRoom(ctx, *partial); err != nil {
				return err
			}
		} else if err := tx.DeletePartialStateRoom(ctx, r.nid); err != nil {
			return err
		}
		if err := tx.SetRoomStateNID(ctx, ev.NID, snapAfter); err != nil {
			return err
		}
		return tx.SetRoomState(ctx, r.nid, snapAfter, ev.Depth)
	})
	if err != nil {
		if ev != nil && ev.NID != 0 {
			s.pdus.forget(ev.NID) // rolled back: the NID may be handed out again
		}
		return err
	}
	s.keys.remember(key, keyNID)
	s.snapshots.put(snapAfter, &snapshotEntry{state: after, chainLen: 2})
	r.loaded = false
	if err := s.loadRoom(ctx, r); err != nil {
		return err
	}
	var notify []string
	for u, m := range r.members {
		if (m == spec.Join || m == spec.Invite) && s.isLocal(u) {
			notify = append(notify, u)
		}
	}
	if s.listener != nil {
		s.listener.EventsCommitted(ev.NID, notify)
	}
	return nil
}

// MakeMembership answers make_join, make_leave and make_knock for userID (of the asking
// server) in a room this server is in: M_INCOMPATIBLE_ROOM_VERSION when the room's version
// is not among supportedVersions (make_join and make_knock), M_FORBIDDEN when the auth rules
// would not allow the membership, M_NOT_FOUND for a room this server is not in. A restricted
// join's template names one of our users in join_authorised_via_users_server, or fails as
// joinAuthoriser says (restricted.go).
func (s *Server) MakeMembership(ctx context.Context, roomID, userID, membership string, supportedVersions []gomatrixserverlib.RoomVersion) (*MembershipTemplate, error) {
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer r.unlock()
	if !s.resident(r) {
		return nil, spec.NotFound("this server is not in the room")
	}
	if err := refusePartial(r, membership); err != nil {
		return nil, err
	}
	if membership != spec.Leave {
		ok := false
		for _, v := range supportedVersions {
			if v == r.version.Version() {
				ok = true
			}
		}
		if !ok {
			return nil, spec.IncompatibleRoomVersion(string(r.version.Version()))
		}
	}
	fields := map[string]any{"membership": membership}
	if membership == spec.Join {
		// A restricted join names one of our users who may invite, or fails as the
		// server-server API's "Restricted rooms" says (M_FORBIDDEN, M_UNABLE_TO_AUTHORISE_JOIN,
		// M_UNABLE_TO_GRANT_JOIN).
		via, err := s.joinAuthoriser(ctx, r, userID)
		if err != nil {
			return nil, err
		}
		if via != "" {
			fields[authorisedViaKey] = via
		}
	}
	content, _ := json.Marshal(fields)
	prev := make([]string, 0, len(r.extremities))
	for _, e := range r.extremities {
		prev = append(prev, e.id)
	}
	proto := gomatrixserverlib.ProtoEvent{
		SenderID: userID, RoomID: r.id, Type: spec.MRoomMember, StateKey: &userID,
		Content: content, Depth: min(r.maxDepth+1, maxEventDepth), PrevEvents: prev,
	}
	builder, authEvents, err := s.builderAt(ctx, r, &proto, r.state)
	if err != nil {
		return nil, err
	}
	// Check the membership would be allowed: build it signed with our key, as a stand-in.
	probe, err := builder.Build(s.now(), s.cfg.ServerName, s.cfg.KeyID, s.cfg.PrivateKey)
	if err != nil {
		return nil, buildError(err)
	}
	if err := gomatrixserverlib.Allowed(probe, authEvents, userIDForSender); err != nil {
		return nil, spec.Forbidden(err.Error())
	}
	proto.AuthEvents = builder.AuthEvents
	return &MembershipTemplate{Version: r.version.Version(), Event: proto}, nil
}

// SendMembership accepts a signed membership event (send_join, send_leave, send_knock) that
// origin made from MakeMembership's template and checked: it must be a membership of the
// given kind for a user of origin. The event enters the room as InputRemote says and is
// sent on to the other servers in the room. A join naming one of our users in
// join_authorised_via_users_server (which federationapi signed for us) must pass
// checkRestrictedJoin first. For joins the answer holds the state before
// the event and the auth chain; for knocks the stripped state is the answer's State.
func (s *Server) SendMembership(ctx context.Context, origin spec.ServerName, membership string, pdu gomatrixserverlib.PDU) (*StateAndAuth, error) {
	return s.sendMembership(ctx, origin, membership, pdu, false)
}

// SendJoinOmittingMembers is SendMembership for a join whose server asked send_join v2 with
// omit_members=true: the answer is partialJoinAnswer's (MSC3706), with MembersOmitted set.
func (s *Server) SendJoinOmittingMembers(ctx context.Context, origin spec.ServerName, pdu gomatrixserverlib.PDU) (*StateAndAuth, error) {
	return s.sendMembership(ctx, origin, spec.Join, pdu, true)
}

func (s *Server) sendMembership(ctx context.Context, origin spec.ServerName, membership string, pdu gomatrixserverlib.PDU, omitMembers bool) (*StateAndAuth, error) {
	if pdu.Type() != spec.MRoomMember || pdu.StateKey() == nil || *pdu.StateKey() != string(pdu.SenderID()) {
		return nil, spec.BadJSON("the event must be a membership event of its sender")
	}
	if m, err := pdu.Membership(); err != nil || m != membership {
		return nil, spec.BadJSON("the event's membership must be " + membership)
	}
	if serverOf(string(pdu.SenderID())) != string(origin) {
		return nil, spec.Forbidden("the event's sender does not belong to the requesting server")
	}
	r, err := s.lockRoom(ctx, pdu.RoomID().String())
	if err != nil {
		return nil, err
	}
	defer r.unlock()
	if !s.resident(r) {
		return nil, spec.NotFound("this server is not in the room")
	}
	if err := refusePartial(r, membership); err != nil {
		return nil, err
	}
	if pdu.Version() != r.version.Version() {
		return nil, spec.BadJSON("the event is not of the room's version")
	}
	if membership == spec.Join {
		if err := s.checkAuthorisedJoin(ctx, r, pdu); err != nil {
			return nil, err
		}
	}
	budget := maxFetchTotal
	err = s.inputRemote(ctx, r, remoteInput{origin: origin, pdu: pdu, forward: true, budget: &budget})
	var rej *RejectedError
	if errors.As(err, &rej) {
		return nil, spec.Forbidden(rej.Reason)
	} else if err != nil {
		return nil, err
	}
	ev, err := s.db.Event(ctx, pdu.EventID())
	if err != nil {
		return nil, err
	}
	if !ev.Visible() {
		return nil, spec.Forbidden("the event is not allowed by the room's current state")
	}
	if membership == spec.Leave {
		return &StateAndAuth{}, nil
	}
	before, _, err := s.stateAt(ctx, ev.StateBeforeNID)
	if err != nil {
		return nil, err
	}
	if membership == spec.Join && omitMembers {
		return s.partialJoinAnswer(ctx, r, pdu, before)
	}
	statePDUs, err := s.stateEvents(ctx, r.version, before, nil)
	if err != nil {
		return nil, err
	}
	if membership == spec.Knock {
		return &StateAndAuth{State: strippedOf(statePDUs, "")}, nil
	}
	chain, _, err := s.authChainPDUs(ctx, r, append(append([]gomatrixserverlib.PDU(nil), statePDUs...), pdu))
	if err != nil {
		return nil, err
	}
	return &StateAndAuth{State: statePDUs, AuthChain: uniquePDUs(chain)}, nil
}

func uniquePDUs(in []gomatrixserverlib.PDU) []gomatrixserverlib.PDU {
	seen := map[string]bool{}
	var out []gomatrixserverlib.PDU
	for _, p := range in {
		if !seen[p.EventID()] {
			seen[p.EventID()] = true
			out = append(out, p)
		}
	}
	return out
}

// strippedOf returns the state events an invitee or knocker is shown (the spec's "stripped
// state"): create, join rules, name, avatar, canonical alias, encryption and topic, and the
// membership of user.
func strippedOf(state []gomatrixserverlib.PDU, user string) []gomatrixserverlib.PDU {
	var out []gomatrixserverlib.PDU
	for _, p := range state {
		switch p.Type() {
		case spec.MRoomCreate, spec.MRoomJoinRules, "m.room.name", "m.room.avatar", "m.room.canonical_alias",
			"m.room.encryption", "m.room.topic":
			out = append(out, p)
		case spec.MRoomMember:
			if user != "" && p.StateKey() != nil && *p.StateKey() == user {
				out = append(out, p)
			}
		}
	}
	return out
}

// inviteRoomState is the stripped state sent with an invite to another server.
func (s *Server) inviteRoomState(ctx context.Context, r *room, inviter string) ([]gomatrixserverlib.InviteStrippedState, error) {
	state, err := s.stateEvents(ctx, r.version, r.state, nil)
	if err != nil {
		return nil, err
	}
	var out []gomatrixserverlib.InviteStrippedState
	for _, p := range strippedOf(state, inviter) {
		out = append(out, gomatrixserverlib.NewInviteStrippedState(p))
	}
	return out, nil
}

// remoteInvite has the invitee's server sign an invite of one of its users (PUT /invite)
// before the invite is stored and sent.
func (s *Server) remoteInvite(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) (gomatrixserverlib.PDU, error) {
	stripped, err := s.inviteRoomState(ctx, r, string(pdu.SenderID()))
	if err != nil {
		return nil, err
	}
	signed, err := s.remote.Invite(ctx, r.version, pdu, stripped)
	if err != nil {
		var me spec.MatrixError
		if errors.As(err, &me) {
			return nil, me
		}
		s.log.Warn("remote invite failed", "room_id", r.id, "event_id", pdu.EventID(), "err", err)
		return nil, spec.Forbidden("the invitee's server refused the invite or could not be reached")
	}
	if signed.EventID() != pdu.EventID() {
		return nil, spec.Forbidden("the invitee's server changed the invite")
	}
	return signed, nil
}

// ReceiveInvite stores an invite of a local user to a room on another server (PUT /invite):
// pdu already carries this server's signature. The invite appears in the user's /sync with
// strippedState as its invite_state (kept in the event's unsigned.invite_room_state).
func (s *Server) ReceiveInvite(ctx context.Context, pdu gomatrixserverlib.PDU, strippedState []gomatrixserverlib.InviteStrippedState) error {
	target := pdu.StateKey()
	if target == nil || !s.isLocal(*target) {
		return spec.Forbidden("the invitee is not a user of this server")
	}
	roomID := pdu.RoomID().String()
	if err := s.checkNotBlocked(ctx, roomID); err != nil {
		return err
	}
	// Judged from the database, not under the room lock: the inviting server may be waiting
	// for this answer while this server waits on it with the room locked (both inviting).
	if resident, err := s.residentStored(ctx, roomID); err != nil {
		return err
	} else if resident {
		// We are in the room: the invite arrives with the room's events (/send).
		return nil
	}
	raw := pdu.JSON()
	if len(strippedState) > 0 {
		ss, err := json.Marshal(strippedState)
		if err == nil {
			if withState, err := sjson.SetRawBytes(raw, "unsigned.invite_room_state", ss); err == nil {
				raw = withState
			}
		}
	}
	return s.storeOutOfRoomMembership(ctx, pdu, raw, spec.Invite)
}

// storeOutOfRoomMembership stores a membership event of a local user in a room this server
// is not in (an invite received, an invite rejected through another server), so that the
// user's /sync shows it: the room row exists without state, and the event is in the stream.
func (s *Server) storeOutOfRoomMembership(ctx context.Context, pdu gomatrixserverlib.PDU, raw []byte, membership string) error {
	return s.storeOutOfRoomMembershipIf(ctx, pdu, raw, membership, nil)
}

// storeOutOfRoomMembershipIf is storeOutOfRoomMembership when still(r), judged under the
// room lock, holds: a change decided on an earlier look at the room (a rescinded invite, a
// local rejection) is dropped if the room moved on meanwhile (this server joined it).
func (s *Server) storeOutOfRoomMembershipIf(ctx context.Context, pdu gomatrixserverlib.PDU, raw []byte, membership string, still func(r *room) bool) error {
	roomID := pdu.RoomID().String()
	target := *pdu.StateKey()
	if err := s.ensureRoomRow(ctx, roomID, pdu.Version()); err != nil {
		return err
	}
	r, err := s.lockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.unlock()
	if still != nil && !still(r) {
		return nil
	}
	var ev *storage.Event
	key := storage.StateKey{Type: spec.MRoomMember, StateKey: target}
	var keyNID int64
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.LockEventStream(ctx); err != nil {
			return err
		}
		var err error
		if keyNID, err = s.stateKeyNID(ctx, tx, key); err != nil {
			return err
		}
		ev = &storage.Event{
			EventID: pdu.EventID(), RoomNID: r.nid, Type: pdu.Type(), Sender: string(pdu.SenderID()),
			Depth: pdu.Depth(), OriginTS: int64(pdu.OriginServerTS()), StateKeyNID: keyNID, JSON: raw,
		}
		if _, err := tx.InsertEvent(ctx, ev); errors.Is(err, storage.ErrConflict) {
			ev = nil
			return nil
		} else if err != nil {
			return err
		}
		return tx.SetMembership(ctx, r.nid, target, membership, ev.NID)
	})
	if err != nil || ev == nil {
		return err
	}
	s.keys.remember(key, keyNID)
	r.members[target] = membership
	r.pushMembers = nil
	if s.listener != nil {
		s.listener.EventsCommitted(ev.NID, []string{target})
	}
	return nil
}

// leaveRemote leaves (or rejects an invite to) a room this server is not in, through the
// server of the inviter and the room's last known members.
func (s *Server) leaveRemote(ctx context.Context, r *room, userID string) error {
	servers := dedupServers(s.joinCandidates(ctx, r, userID), s.cfg.ServerName)
	if i := strings.IndexByte(r.id, ':'); i >= 0 {
		servers = dedupServers(append(servers, spec.ServerName(r.id[i+1:])), s.cfg.ServerName)
	}
	roomID := r.id
	r.unlock()
	pdu, err := s.remote.Leave(ctx, servers, roomID, userID)
	if err != nil {
		s.log.Warn("remote leave failed; the invite is rejected locally only", "room_id", roomID, "user_id", userID, "err", err)
		return s.rejectInviteLocally(ctx, roomID, userID, "")
	}
	return s.storeOutOfRoomMembership(ctx, pdu, pdu.JSON(), spec.Leave)
}

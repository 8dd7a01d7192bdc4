package roomserver

import (
	"context"
	"encoding/json"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// The resident side of partial-state joins (MSC3706, in the spec since v1.6): a server that
// asks send_join v2 with omit_members=true is answered without the room's membership events,
// most of a big room's state, and learns from servers_in_room whom to ask for the rest.

// maxHeroes is the number of heroes of a room summary (client-server /sync, m.heroes).
const maxHeroes = 5

// partialJoinAnswer is the send_join answer for join of room r (locked) with state before
// the join: every state event that is not a membership, and the memberships of
//
//  1. the users whose membership auth needs for those events and for the join (their
//     senders; the joining user's own former membership; the user named in
//     join_authorised_via_users_server), so that each returned event and the join are
//     allowed by the returned state itself, as a joining server checks;
//  2. the room's heroes when it has neither m.room.name nor m.room.canonical_alias (the
//     spec's omit_members: the joining server computes the room's name from them);
//
// the auth chain of those events and of the join, leaving out what state holds (the spec
// allows it with omit_members); and the servers of the members joined before the join.
// Only the state keys are read for the whole state, never the membership events left out.
func (s *Server) partialJoinAnswer(ctx context.Context, r *room, join gomatrixserverlib.PDU, before map[int64]int64) (*StateAndAuth, error) {
	keys, err := s.stateKeysOf(ctx, before)
	if err != nil {
		return nil, err
	}
	others := map[int64]int64{}
	memberKeys := map[string]int64{} // user ID -> state key NID of their membership
	named := false
	for knid, evnid := range before {
		k, ok := keys[knid]
		if !ok {
			continue
		}
		switch {
		case k.Type == spec.MRoomMember:
			memberKeys[k.StateKey] = knid
			continue
		case k.StateKey == "" && (k.Type == "m.room.name" || k.Type == "m.room.canonical_alias"):
			named = true
		}
		others[knid] = evnid
	}
	state, err := s.stateEvents(ctx, r.version, others, nil)
	if err != nil {
		return nil, err
	}
	memberships, err := s.membershipsAt(ctx, r, before, memberKeys)
	if err != nil {
		return nil, err
	}

	wanted := map[string]bool{}
	for _, u := range gomatrixserverlib.StateNeededForAuth(append(append([]gomatrixserverlib.PDU(nil), state...), join)).Member {
		wanted[u] = true
	}
	if !named {
		for _, u := range heroesOf(memberships, *join.StateKey()) {
			wanted[u] = true
		}
	}
	var memberNIDs []int64
	for u := range wanted {
		if knid, ok := memberKeys[u]; ok {
			memberNIDs = append(memberNIDs, before[knid])
		}
	}
	sort.Slice(memberNIDs, func(i, j int) bool { return memberNIDs[i] < memberNIDs[j] })
	members, err := s.pdusByNID(ctx, r.version, memberNIDs)
	if err != nil {
		return nil, err
	}
	for _, nid := range memberNIDs {
		if p, ok := members[nid]; ok {
			state = append(state, p)
		}
	}

	chain, _, err := s.authChainPDUs(ctx, r, append(append([]gomatrixserverlib.PDU(nil), state...), join))
	if err != nil {
		return nil, err
	}
	inState := make(map[string]bool, len(state))
	for _, p := range state {
		inState[p.EventID()] = true
	}
	var auth []gomatrixserverlib.PDU
	for _, p := range uniquePDUs(chain) {
		if !inState[p.EventID()] {
			auth = append(auth, p)
		}
	}

	servers := map[string]bool{}
	for u, m := range memberships {
		if m == spec.Join {
			servers[serverOf(u)] = true
		}
	}
	serverList := make([]string, 0, len(servers))
	for srv := range servers {
		serverList = append(serverList, srv)
	}
	sort.Strings(serverList)
	return &StateAndAuth{State: state, AuthChain: auth, MembersOmitted: true, ServersInRoom: serverList}, nil
}

// stateKeysOf returns the (type, state key) pairs of the keys of state: from the cache, the
// rest with one query.
func (s *Server) stateKeysOf(ctx context.Context, state map[int64]int64) (map[int64]storage.StateKey, error) {
	out := make(map[int64]storage.StateKey, len(state))
	var missing []int64
	s.keys.mu.RLock()
	for knid := range state {
		if k, ok := s.keys.byNID[knid]; ok {
			out[knid] = k
		} else {
			missing = append(missing, knid)
		}
	}
	s.keys.mu.RUnlock()
	if len(missing) == 0 {
		return out, nil
	}
	read, err := s.db.StateKeysByNID(ctx, missing)
	if err != nil {
		return nil, err
	}
	for knid, k := range read {
		out[knid] = k
	}
	return out, nil
}

// membershipsAt returns the membership (join, invite, leave, ban, knock) of each user of
// memberKeys, which maps users to their membership's state key NID, in state of room r
// (locked): the room's current membership where the current state holds the same event,
// read from the events for the rest (the few changed since, such as the joining user's).
func (s *Server) membershipsAt(ctx context.Context, r *room, state map[int64]int64, memberKeys map[string]int64) (map[string]string, error) {
	out := make(map[string]string, len(memberKeys))
	var rest []int64
	for u, knid := range memberKeys {
		if m, ok := r.members[u]; ok && r.state[knid] == state[knid] {
			out[u] = m
		} else {
			rest = append(rest, state[knid])
		}
	}
	if len(rest) == 0 {
		return out, nil
	}
	evs, err := s.db.EventsByNID(ctx, rest)
	if err != nil {
		return nil, err
	}
	for _, ev := range evs {
		var fields struct {
			StateKey *string `json:"state_key"`
			Content  struct {
				Membership string `json:"membership"`
			} `json:"content"`
		}
		if json.Unmarshal(ev.JSON, &fields) == nil && fields.StateKey != nil {
			out[*fields.StateKey] = fields.Content.Membership
		}
	}
	return out, nil
}

// heroesOf returns the heroes of a room with the given memberships as the joining user's
// /sync would show them (syncapi's summary): the first five joined or invited members other
// than the user by user ID, or when there are none the first five former members.
func heroesOf(memberships map[string]string, user string) []string {
	users := make([]string, 0, len(memberships))
	for u := range memberships {
		if u != user {
			users = append(users, u)
		}
	}
	sort.Strings(users)
	var heroes, former []string
	for _, u := range users {
		if m := memberships[u]; m == spec.Join || m == spec.Invite {
			heroes = append(heroes, u)
		} else {
			former = append(former, u)
		}
	}
	if len(heroes) == 0 {
		heroes = former
	}
	if len(heroes) > maxHeroes {
		heroes = heroes[:maxHeroes]
	}
	return heroes
}

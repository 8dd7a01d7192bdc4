package federationapi

import (
	"context"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/roomserver/ownedstate"
)

// restoreOwnedState returns state with the state events of the send_join answer raw that
// gomatrixserverlib.PerformJoin dropped but the rules of an MSC3757 room allow.
//
// PerformJoin checks every state event of the answer against its auth events with
// gomatrixserverlib.Allowed (CheckSendJoinResponse) and silently leaves out those that fail.
// That function knows only the old rule 8, so in an MSC3757 room it drops every event on an
// owned key that is not exactly its sender's user ID (the MatrixRTC call memberships among
// them), and the joining server would start from a state the resident servers do not have.
// Here each state event of the answer missing from state is checked again, as PerformJoin
// did (format, signatures, then the auth rules against its auth events from the checked answer), with
// ownedstate.Allowed; those that pass are put back. Other room versions are left alone.
func (r *remote) restoreOwnedState(ctx context.Context, ver gomatrixserverlib.IRoomVersion, raw *fclient.RespSendJoin, state, authChain []gomatrixserverlib.PDU) []gomatrixserverlib.PDU {
	if raw == nil || !ownedstate.Enabled(ver.Version()) {
		return state
	}
	byID := make(map[string]gomatrixserverlib.PDU, len(state)+len(authChain))
	for _, p := range authChain {
		byID[p.EventID()] = p
	}
	for _, p := range state {
		byID[p.EventID()] = p
	}
	checked := len(state)
	for _, js := range raw.StateEvents {
		// Only non-member events on keys starting with "@" are decided differently by the two
		// rule sets; the rest of a large room's answer is not parsed a second time.
		if k := gjson.GetBytes(js, "state_key"); !strings.HasPrefix(k.Str, "@") || gjson.GetBytes(js, "type").Str == spec.MRoomMember {
			continue
		}
		p, err := r.s.checkPDU(ctx, ver, js)
		if err != nil || byID[p.EventID()] != nil || p.StateKey() == nil {
			continue
		}
		var auth []gomatrixserverlib.PDU
		for _, id := range p.AuthEventIDs() {
			if a := byID[id]; a != nil {
				auth = append(auth, a)
			}
		}
		provider, err := gomatrixserverlib.NewAuthEvents(auth)
		if err != nil || ownedstate.Allowed(p, provider, userIDForSender) != nil {
			continue
		}
		state = append(state, p)
	}
	if n := len(state) - checked; n > 0 {
		r.s.log.Info("send_join state: owned state events restored", "origin", string(raw.Origin), "count", n)
	}
	return state
}

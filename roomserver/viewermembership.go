package roomserver

import (
	"context"
	"encoding/json"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// viewerMemberships returns, for the distinct state snapshots before evs, the viewer's
// membership in each, for unsigned.membership (v1.11, client_event.yaml: "the membership
// property of the requesting user's m.room.member state at the point of the event, including
// any changes caused by the event"; "leave" when the user has no member state). Events of a
// page mostly share a few snapshots, so this is one cached state lookup per snapshot and one
// query for the member events.
func (s *Server) viewerMemberships(ctx context.Context, evs []*storage.Event, userID string) (map[int64]string, error) {
	knid, err := s.lookupStateKeyNID(ctx, storage.StateKey{Type: spec.MRoomMember, StateKey: userID})
	if err != nil {
		return nil, err
	}
	out := make(map[int64]string)
	memberOf := map[int64][]int64{} // member event NID -> snapshots it is the viewer's membership in
	var nids []int64
	for _, ev := range evs {
		snap := ev.StateBeforeNID
		if _, done := out[snap]; done || snap == 0 {
			continue
		}
		out[snap] = spec.Leave
		if knid == 0 {
			continue
		}
		state, err := s.StateAt(ctx, snap)
		if err != nil {
			return nil, err
		}
		if nid, ok := state[knid]; ok {
			if len(memberOf[nid]) == 0 {
				nids = append(nids, nid)
			}
			memberOf[nid] = append(memberOf[nid], snap)
		}
	}
	if len(nids) == 0 {
		return out, nil
	}
	members, err := s.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		membership := membershipOfJSON(m.JSON)
		for _, snap := range memberOf[m.NID] {
			out[snap] = membership
		}
	}
	return out, nil
}

// viewerMembershipAfter is the viewer's membership after ev, given the membership before it.
func viewerMembershipAfter(ev *storage.Event, stateKey *string, userID, before string) string {
	if ev.Type == spec.MRoomMember && stateKey != nil && *stateKey == userID {
		return membershipOfJSON(ev.JSON)
	}
	return before
}

// membershipOfJSON returns content.membership of a member event's JSON, "leave" when absent.
func membershipOfJSON(raw []byte) string {
	var f struct {
		Content struct {
			Membership string `json:"membership"`
		} `json:"content"`
	}
	if json.Unmarshal(raw, &f) != nil || f.Content.Membership == "" {
		return spec.Leave
	}
	return f.Content.Membership
}

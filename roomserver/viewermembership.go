package roomserver

import (
	"context"
	"encoding/json"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/storage"
)

// viewerMemberships returns the viewer's membership at each of evs (by event NID), for
// unsigned.membership (v1.11, client_event.yaml: "the membership property of the requesting
// user's m.room.member state at the point of the event, including any changes caused by the
// event"; "leave" when the user has no member state). Events since the viewer's current
// membership event (a /sync timeline, recent history) take the current membership, read from
// the cached memberships; only older events cost a state lookup, one per distinct snapshot
// before them, and one query for the member events.
func (s *Server) viewerMemberships(ctx context.Context, db eventReader, evs []*storage.Event, userID string) (map[int64]string, error) {
	out := make(map[int64]string, len(evs))
	if len(evs) == 0 {
		return out, nil
	}
	var current *storage.Membership
	ms, err := s.db.AllMemberships(ctx, userID)
	if err != nil {
		return nil, err
	}
	for i := range ms {
		if ms[i].RoomNID == evs[0].RoomNID {
			current = &ms[i]
		}
	}
	var older []*storage.Event
	for _, ev := range evs {
		if current != nil && ev.NID >= current.EventNID {
			out[ev.NID] = viewerMembershipAfter(ev, userID, current.Membership)
		} else if ev.StateBeforeNID != 0 {
			older = append(older, ev)
		}
	}
	if len(older) == 0 {
		return out, nil
	}
	before, err := s.membershipsAtSnapshots(ctx, db, older, userID)
	if err != nil {
		return nil, err
	}
	for _, ev := range older {
		out[ev.NID] = viewerMembershipAfter(ev, userID, before[ev.StateBeforeNID])
	}
	return out, nil
}

// membershipsAtSnapshots returns the viewer's membership in the state snapshots before evs.
func (s *Server) membershipsAtSnapshots(ctx context.Context, db eventReader, evs []*storage.Event, userID string) (map[int64]string, error) {
	knid, err := s.lookupStateKeyNID(ctx, storage.StateKey{Type: spec.MRoomMember, StateKey: userID})
	if err != nil {
		return nil, err
	}
	out := make(map[int64]string)
	memberOf := map[int64][]int64{} // member event NID -> snapshots it is the viewer's membership in
	var nids []int64
	for _, ev := range evs {
		snap := ev.StateBeforeNID
		if _, done := out[snap]; done {
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
	members, err := db.EventsByNID(ctx, nids)
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

// viewerMembershipAfter is the viewer's membership after ev, given the membership before it:
// ev's own when it is the viewer's member event.
func viewerMembershipAfter(ev *storage.Event, userID, before string) string {
	if ev.Type == spec.MRoomMember && gjson.GetBytes(ev.JSON, "state_key").Str == userID {
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

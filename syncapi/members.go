package syncapi

import (
	"encoding/json"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// handleMembers handles GET /rooms/{roomId}/members with the membership and not_membership
// filters. Members are those of the current state, or of the state when the user left.
func (s *Server) handleMembers(r *http.Request) (any, error) {
	ctx := r.Context()
	dev := httputil.Device(ctx)
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	want, notWant := q.Get("membership"), q.Get("not_membership")
	var state []*storage.Event
	if at := q.Get("at"); at != "" {
		state, err = s.membersAt(r, roomID, dev.UserID, at)
	} else {
		state, err = s.rooms.VisibleState(ctx, roomID, dev.UserID)
	}
	if err != nil {
		return nil, err
	}
	var members []*storage.Event
	for _, ev := range state {
		if ev.Type != spec.MRoomMember {
			continue
		}
		m := membershipOf(ev)
		if (want != "" && m != want) || (notWant != "" && m == notWant) {
			continue
		}
		members = append(members, ev)
	}
	chunk, err := s.rooms.ClientEvents(ctx, roomID, members, roomserver.Viewer{UserID: dev.UserID, DeviceID: dev.DeviceID})
	if err != nil {
		return nil, err
	}
	if chunk == nil {
		chunk = []roomserver.ClientEvent{}
	}
	return map[string]any{"chunk": chunk}, nil
}

// membersAt returns the room state at a sync token, for a user who may see it.
func (s *Server) membersAt(r *http.Request, roomID, userID, at string) ([]*storage.Event, error) {
	ctx := r.Context()
	tok, err := ParseToken(at)
	if err != nil {
		if p, ok := parsePageToken(at); ok {
			tok = Token{PDU: streamPointOf(p)}
		} else {
			return nil, err
		}
	}
	vis, room, err := s.memberVisibility(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	nid, err := s.db.LatestRoomEventNID(ctx, room.NID, tok.PDU)
	if err != nil {
		return nil, err
	}
	evs, err := s.db.EventsByNID(ctx, []int64{nid})
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, nil
	}
	if ok, err := vis.canSee(ctx, evs[0]); err != nil || !ok {
		return nil, spec.Forbidden("you may not see the room at that point")
	}
	state, err := s.rooms.StateAt(ctx, evs[0].StateBeforeNID)
	if err != nil {
		return nil, err
	}
	nids := make([]int64, 0, len(state)+1)
	for k, ev := range state {
		if k != evs[0].StateKeyNID {
			nids = append(nids, ev)
		}
	}
	if evs[0].IsState() {
		nids = append(nids, evs[0].NID)
	}
	return s.db.EventsByNID(ctx, nids)
}

// handleJoinedMembers handles GET /rooms/{roomId}/joined_members.
func (s *Server) handleJoinedMembers(r *http.Request) (any, error) {
	ctx := r.Context()
	dev := httputil.Device(ctx)
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	if m, err := s.rooms.Membership(ctx, roomID, dev.UserID); err != nil || m != spec.Join {
		return nil, spec.Forbidden("you are not a member of this room")
	}
	room, err := s.db.Room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	evs, err := s.db.CurrentStateEvents(ctx, room.NID, spec.MRoomMember)
	if err != nil {
		return nil, err
	}
	joined := map[string]any{}
	for _, ev := range evs {
		var f struct {
			StateKey string `json:"state_key"`
			Content  struct {
				Membership  string `json:"membership"`
				DisplayName string `json:"displayname"`
				AvatarURL   string `json:"avatar_url"`
			} `json:"content"`
		}
		if json.Unmarshal(ev.JSON, &f) != nil || f.Content.Membership != spec.Join {
			continue
		}
		entry := map[string]string{}
		if f.Content.DisplayName != "" {
			entry["display_name"] = f.Content.DisplayName
		}
		if f.Content.AvatarURL != "" {
			entry["avatar_url"] = f.Content.AvatarURL
		}
		joined[f.StateKey] = entry
	}
	return map[string]any{"joined": joined}, nil
}

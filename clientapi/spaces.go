package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/publicrooms"
	"github.com/lattice-chat/lattice/storage"
)

// Bounds of GET /hierarchy: rooms per page and how deep the walk goes.
const (
	hierarchyDefaultLimit = 50
	hierarchyMaxLimit     = 100
	hierarchyMaxDepth     = 10
)

// summarised is a room as room_summary.yaml describes it, with the m.space.child events
// that make it a space.
type summarised struct {
	chunk    map[string]any
	children []spaceChild
}

// spaceChild is one m.space.child state event with a non-empty via (the others are removed
// children, as the spaces module says).
type spaceChild struct {
	roomID    string
	order     string
	suggested bool
	ts        int64
	stripped  map[string]any
}

// roomSummary describes roomID to userID from this server's current state of the room
// (definitions/room_summary.yaml). It is M_NOT_FOUND when the room is unknown here or userID
// may not preview it: userID must be joined, invited, knocking or otherwise a member, the
// room world-readable or joinable by anyone (public, knock, knock_restricted), or userID
// joined to a room that a restricted join rule allows.
func (s *Server) roomSummary(ctx context.Context, roomID, userID string) (*summarised, error) {
	room, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("room not found")
	} else if err != nil {
		return nil, err
	}
	joined, err := s.db.RoomMembers(ctx, room.NID, spec.Join)
	if err != nil {
		return nil, err
	}
	if len(joined) == 0 {
		// Nobody here is in the room any more: the state we hold may be stale.
		return nil, spec.NotFound("room not found")
	}
	chunk, err := publicrooms.Entry(ctx, s.db, storage.PublicRoom{NID: room.NID, RoomID: roomID, JoinedMembers: len(joined)})
	if err != nil {
		return nil, err
	}
	chunk["room_version"] = room.Version
	evs, err := s.db.CurrentStateEvents(ctx, room.NID, "")
	if err != nil {
		return nil, err
	}
	out := &summarised{chunk: chunk}
	var allow []string
	for _, ev := range evs {
		var f struct {
			StateKey *string        `json:"state_key"`
			Content  map[string]any `json:"content"`
		}
		if json.Unmarshal(ev.JSON, &f) != nil || f.StateKey == nil {
			continue
		}
		switch ev.Type {
		case "m.room.encryption":
			if alg, ok := f.Content["algorithm"].(string); ok && *f.StateKey == "" {
				chunk["encryption"] = alg
			}
		case spec.MRoomJoinRules:
			rules, _ := f.Content["allow"].([]any)
			for _, a := range rules {
				if m, ok := a.(map[string]any); ok && m["type"] == "m.room_membership" {
					if id, ok := m["room_id"].(string); ok {
						allow = append(allow, id)
					}
				}
			}
		case "m.space.child":
			if via, _ := f.Content["via"].([]any); len(via) == 0 || *f.StateKey == "" {
				continue
			}
			c := spaceChild{roomID: *f.StateKey, ts: ev.OriginTS, stripped: map[string]any{
				"type": ev.Type, "state_key": *f.StateKey, "content": f.Content, "sender": ev.Sender, "origin_server_ts": ev.OriginTS,
			}}
			c.order, _ = f.Content["order"].(string)
			c.suggested, _ = f.Content["suggested"].(bool)
			out.children = append(out.children, c)
		}
	}
	rule, _ := chunk["join_rule"].(string)
	if rule == spec.Restricted || rule == spec.KnockRestricted {
		chunk["allowed_room_ids"] = allow
	}
	membership, err := s.db.Membership(ctx, room.NID, userID)
	if err != nil {
		return nil, err
	}
	if membership != "" {
		chunk["membership"] = membership
	}
	switch {
	case membership == spec.Join || membership == spec.Invite || membership == spec.Knock:
	case chunk["world_readable"] == true:
	case rule == spec.Public || rule == spec.Knock || rule == spec.KnockRestricted:
	case rule == spec.Restricted && s.joinedAny(ctx, userID, allow):
	default:
		return nil, spec.NotFound("room not found")
	}
	return out, nil
}

// joinedAny reports whether userID is joined to one of roomIDs.
func (s *Server) joinedAny(ctx context.Context, userID string, roomIDs []string) bool {
	for _, id := range roomIDs {
		room, err := s.db.Room(ctx, id)
		if err != nil {
			continue
		}
		if m, err := s.db.Membership(ctx, room.NID, userID); err == nil && m == spec.Join {
			return true
		}
	}
	return false
}

// handleRoomSummary handles GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (v1.15).
// Only rooms this server is in are summarised; via is not used to ask other servers.
func (s *Server) handleRoomSummary(r *http.Request) (any, error) {
	roomID, err := s.rooms.ResolveRoom(r.Context(), httputil.PathVar(r, "roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	sum, err := s.roomSummary(r.Context(), roomID, httputil.Device(r.Context()).UserID)
	if err != nil {
		return nil, err
	}
	return sum.chunk, nil
}

// handleHierarchy handles GET /_matrix/client/v1/rooms/{roomId}/hierarchy: the space tree
// below roomId, depth first, children in the spaces module's order, rooms the user may not
// preview left out with their subtrees. Rooms this server is not in are left out too (they
// would need federation's /hierarchy). The from token is the offset into the walk.
func (s *Server) handleHierarchy(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	limit, maxDepth, from := hierarchyDefaultLimit, hierarchyMaxDepth, 0
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			return nil, spec.InvalidParam("limit must be a positive integer")
		}
		limit = min(limit, hierarchyMaxLimit)
	}
	if v := q.Get("max_depth"); v != "" {
		if maxDepth, err = strconv.Atoi(v); err != nil || maxDepth < 0 {
			return nil, spec.InvalidParam("max_depth must be a non-negative integer")
		}
		maxDepth = min(maxDepth, hierarchyMaxDepth)
	}
	if v := q.Get("from"); v != "" {
		if from, err = strconv.Atoi(v); err != nil || from < 0 {
			return nil, spec.InvalidParam("invalid from token")
		}
	}
	suggestedOnly := q.Get("suggested_only") == "true"
	userID := httputil.Device(r.Context()).UserID
	root, err := s.roomSummary(r.Context(), roomID, userID)
	if isNotFound(err) {
		return nil, spec.Forbidden("you may not preview this room")
	} else if err != nil {
		return nil, err
	}
	type item struct {
		sum   *summarised
		depth int
	}
	var rooms []map[string]any
	seen := map[string]bool{roomID: true}
	stack := []item{{root, 0}}
	for n := 0; len(stack) > 0 && len(rooms) < limit; n++ {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n >= from {
			// A hierarchy chunk is the summary without membership, plus children_state.
			chunk := make(map[string]any, len(it.sum.chunk)+1)
			for k, v := range it.sum.chunk {
				if k != "membership" {
					chunk[k] = v
				}
			}
			states := make([]map[string]any, 0, len(it.sum.children))
			for _, c := range it.sum.children {
				states = append(states, c.stripped)
			}
			chunk["children_state"] = states
			rooms = append(rooms, chunk)
		}
		if it.depth >= maxDepth {
			continue
		}
		children := orderChildren(it.sum.children)
		// Pushed in reverse so that the first child is visited next.
		for i := len(children) - 1; i >= 0; i-- {
			c := children[i]
			if seen[c.roomID] || (suggestedOnly && !c.suggested) {
				continue
			}
			sum, err := s.roomSummary(r.Context(), c.roomID, userID)
			if isNotFound(err) {
				continue
			} else if err != nil {
				return nil, err
			}
			seen[c.roomID] = true
			stack = append(stack, item{sum, it.depth + 1})
		}
	}
	resp := map[string]any{"rooms": rooms}
	if len(stack) > 0 {
		resp["next_batch"] = strconv.Itoa(from + len(rooms))
	}
	if rooms == nil {
		resp["rooms"] = []any{}
	}
	return resp, nil
}

// isNotFound reports whether err is M_NOT_FOUND.
func isNotFound(err error) bool {
	var me spec.MatrixError
	return errors.As(err, &me) && me.ErrCode == spec.ErrorNotFound
}

// orderChildren sorts a space's children as the spaces module says: those with a valid order
// (at most 50 characters between \x20 and \x7E) first, by order; then by the m.space.child
// event's origin_server_ts; ties by room ID.
func orderChildren(cs []spaceChild) []spaceChild {
	valid := func(o string) bool {
		if o == "" || len(o) > 50 {
			return false
		}
		for i := 0; i < len(o); i++ {
			if o[i] < 0x20 || o[i] > 0x7e {
				return false
			}
		}
		return true
	}
	out := append([]spaceChild(nil), cs...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		va, vb := valid(a.order), valid(b.order)
		if va != vb {
			return va
		}
		if va && a.order != b.order {
			return a.order < b.order
		}
		if a.ts != b.ts {
			return a.ts < b.ts
		}
		return a.roomID < b.roomID
	})
	return out
}

package clientapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

const (
	defaultPublicRoomsLimit = 100
	maxPublicRoomsLimit     = 500
)

type publicRoomsFilter struct {
	GenericSearchTerm string     `json:"generic_search_term"`
	RoomTypes         *[]*string `json:"room_types"`
}

type publicRoomsRequest struct {
	Limit  int               `json:"limit"`
	Since  string            `json:"since"`
	Server string            `json:"server"`
	Filter publicRoomsFilter `json:"filter"`
}

// handleGetPublicRooms handles GET /publicRooms.
func (s *Server) handleGetPublicRooms(r *http.Request) (any, error) {
	q := r.URL.Query()
	req := publicRoomsRequest{Since: q.Get("since"), Server: q.Get("server")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return nil, spec.InvalidParam("limit must be an integer")
		}
		req.Limit = n
	}
	return s.publicRooms(r, req)
}

// handlePostPublicRooms handles POST /publicRooms, with a search filter.
func (s *Server) handlePostPublicRooms(r *http.Request) (any, error) {
	var req publicRoomsRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	return s.publicRooms(r, req)
}

// publicRooms lists the published rooms of this server. since/next_batch tokens are offsets;
// a search filter is applied to the rooms' name, topic, alias and ID.
func (s *Server) publicRooms(r *http.Request, req publicRoomsRequest) (any, error) {
	if req.Server != "" && req.Server != s.cfg.ServerName {
		return nil, spec.NotFound("this server cannot list another server's rooms yet")
	}
	limit := req.Limit
	if limit <= 0 {
		limit = defaultPublicRoomsLimit
	}
	limit = min(limit, maxPublicRoomsLimit)
	offset := 0
	if req.Since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(req.Since, "o"))
		if err != nil || n < 0 {
			return nil, spec.InvalidParam("invalid since token")
		}
		offset = n
	}
	term := strings.ToLower(strings.TrimSpace(req.Filter.GenericSearchTerm))
	// With a search term, matching happens here, so page through all public rooms.
	fetch, skip := limit+1, offset
	if term != "" || req.Filter.RoomTypes != nil {
		fetch, skip = maxPublicRoomsLimit*20, 0
	}
	rooms, total, err := s.db.PublicRooms(r.Context(), skip, fetch)
	if err != nil {
		return nil, err
	}
	chunk := []map[string]any{}
	for _, pr := range rooms {
		entry, err := s.publicRoomEntry(r, pr)
		if err != nil {
			return nil, err
		}
		if !matchesPublicRoomFilter(entry, term, req.Filter.RoomTypes) {
			continue
		}
		chunk = append(chunk, entry)
	}
	if term != "" || req.Filter.RoomTypes != nil {
		total = len(chunk)
		chunk = chunk[min(offset, len(chunk)):]
	}
	resp := map[string]any{"total_room_count_estimate": total}
	if len(chunk) > limit {
		chunk = chunk[:limit]
		resp["next_batch"] = "o" + strconv.Itoa(offset+limit)
	}
	if offset > 0 {
		resp["prev_batch"] = "o" + strconv.Itoa(max(offset-limit, 0))
	}
	resp["chunk"] = chunk
	return resp, nil
}

// publicRoomEntry describes one published room from its current state.
func (s *Server) publicRoomEntry(r *http.Request, pr storage.PublicRoom) (map[string]any, error) {
	evs, err := s.db.CurrentStateEvents(r.Context(), pr.NID, "")
	if err != nil {
		return nil, err
	}
	entry := map[string]any{
		"room_id": pr.RoomID, "num_joined_members": pr.JoinedMembers,
		"world_readable": false, "guest_can_join": false, "join_rule": "public",
	}
	for _, ev := range evs {
		var f struct {
			StateKey string         `json:"state_key"`
			Content  map[string]any `json:"content"`
		}
		if json.Unmarshal(ev.JSON, &f) != nil || f.StateKey != "" {
			continue
		}
		str := func(k string) (string, bool) { v, ok := f.Content[k].(string); return v, ok && v != "" }
		switch ev.Type {
		case "m.room.name":
			if v, ok := str("name"); ok {
				entry["name"] = v
			}
		case "m.room.topic":
			if v, ok := str("topic"); ok {
				entry["topic"] = v
			}
		case "m.room.canonical_alias":
			if v, ok := str("alias"); ok {
				entry["canonical_alias"] = v
			}
		case "m.room.avatar":
			if v, ok := str("url"); ok {
				entry["avatar_url"] = v
			}
		case spec.MRoomJoinRules:
			if v, ok := str("join_rule"); ok {
				entry["join_rule"] = v
			}
		case spec.MRoomHistoryVisibility:
			v, _ := str("history_visibility")
			entry["world_readable"] = v == "world_readable"
		case "m.room.guest_access":
			v, _ := str("guest_access")
			entry["guest_can_join"] = v == "can_join"
		case spec.MRoomCreate:
			if v, ok := str("type"); ok {
				entry["room_type"] = v
			}
		}
	}
	return entry, nil
}

func matchesPublicRoomFilter(entry map[string]any, term string, roomTypes *[]*string) bool {
	if roomTypes != nil && len(*roomTypes) > 0 {
		rt, _ := entry["room_type"].(string)
		ok := false
		for _, t := range *roomTypes {
			ok = ok || (t == nil && rt == "") || (t != nil && *t == rt)
		}
		if !ok {
			return false
		}
	}
	if term == "" {
		return true
	}
	for _, k := range []string{"name", "topic", "canonical_alias", "room_id"} {
		if v, ok := entry[k].(string); ok && strings.Contains(strings.ToLower(v), term) {
			return true
		}
	}
	return false
}

// handleUserDirectory handles POST /user_directory/search: local users who share a room with
// the searcher or are in a public room.
func (s *Server) handleUserDirectory(r *http.Request) (any, error) {
	var req struct {
		SearchTerm string `json:"search_term"`
		Limit      int    `json:"limit"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, 100)
	users, err := s.db.SearchUsers(r.Context(), httputil.Device(r.Context()).UserID, req.SearchTerm, s.cfg.UserDirectory.SearchAllUsers, limit+1)
	if err != nil {
		return nil, err
	}
	results := []map[string]string{}
	for i, u := range users {
		if i == limit {
			break
		}
		res := map[string]string{"user_id": u.UserID}
		if u.DisplayName != "" {
			res["display_name"] = u.DisplayName
		}
		if u.AvatarURL != "" {
			res["avatar_url"] = u.AvatarURL
		}
		results = append(results, res)
	}
	return map[string]any{"results": results, "limited": len(users) > limit}, nil
}

// Package publicrooms builds the public room directory of this server (the rooms published
// with visibility "public"), in the shape both the Client-Server and the Server-Server
// /publicRooms endpoints return: paging by offset tokens, a search term and room types.
// It reads storage only and must not import net/http, roomserver or any HTTP surface.
package publicrooms

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

const (
	defaultLimit = 100
	maxLimit     = 500
)

// Filter is the "filter" of POST /publicRooms.
type Filter struct {
	GenericSearchTerm string     `json:"generic_search_term"`
	RoomTypes         *[]*string `json:"room_types"`
}

// Request is a page request: Since is a next_batch or prev_batch token from an earlier page.
type Request struct {
	Limit  int
	Since  string
	Filter Filter
	// Rooms lists the directory's rooms, as storage's PublicRooms does (which nil means):
	// an application service network's directory lists others.
	Rooms func(ctx context.Context, offset, limit int) ([]storage.PublicRoom, int, error)
}

// List returns one page of the directory: chunk, total_room_count_estimate and the
// next_batch and prev_batch tokens (offsets). A search term matches the rooms' name, topic,
// canonical alias and ID.
func List(ctx context.Context, db *storage.DB, req Request) (map[string]any, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	offset := 0
	if req.Since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(req.Since, "o"))
		if err != nil || n < 0 {
			return nil, spec.InvalidParam("invalid since token")
		}
		offset = n
	}
	term := strings.ToLower(strings.TrimSpace(req.Filter.GenericSearchTerm))
	filtered := term != "" || req.Filter.RoomTypes != nil
	// With a filter, matching happens here, so page through all public rooms.
	fetch, skip := limit+1, offset
	if filtered {
		fetch, skip = maxLimit*20, 0
	}
	source := req.Rooms
	if source == nil {
		source = db.PublicRooms
	}
	rooms, total, err := source(ctx, skip, fetch)
	if err != nil {
		return nil, err
	}
	chunk := []map[string]any{}
	for _, pr := range rooms {
		entry, err := Entry(ctx, db, pr)
		if err != nil {
			return nil, err
		}
		if matches(entry, term, req.Filter.RoomTypes) {
			chunk = append(chunk, entry)
		}
	}
	if filtered {
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

// Entry describes one published room from its current state.
func Entry(ctx context.Context, db *storage.DB, pr storage.PublicRoom) (map[string]any, error) {
	evs, err := db.CurrentStateEvents(ctx, pr.NID, "")
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

func matches(entry map[string]any, term string, roomTypes *[]*string) bool {
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

package adminapi

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// Rooms: list, details, members, state, messages, timestamp to event, forward extremities,
// delete (v1 and v2, async), block, make room admin, join a user, event context
// (Synapse's docs/admin_api/rooms.md and room_membership.md).
//
// Registering the routes happens once, at start-up: deletions a previous run left unfinished
// are marked failed then (roomdelete.go).
func (s *Server) roomRoutes() []route {
	s.failUnfinishedDeletes()
	return []route{
		{http.MethodGet, "/v1/rooms", s.handleListRooms, false},
		{http.MethodGet, "/v1/rooms/{room_id}", s.handleRoomDetails, false},
		{http.MethodDelete, "/v1/rooms/{room_id}", s.handleDeleteRoomV1, false},
		{http.MethodGet, "/v1/rooms/{room_id}/members", s.handleRoomMembers, false},
		{http.MethodGet, "/v1/rooms/{room_id}/state", s.handleRoomState, false},
		{http.MethodGet, "/v1/rooms/{room_id}/messages", s.handleRoomMessages, false},
		{http.MethodGet, "/v1/rooms/{room_id}/context/{event_id}", s.handleRoomContext, false},
		{http.MethodGet, "/v1/rooms/{room_id}/timestamp_to_event", s.handleRoomTimestampToEvent, false},
		{http.MethodGet, "/v1/rooms/{room_id}/forward_extremities", s.handleForwardExtremities, false},
		{http.MethodDelete, "/v1/rooms/{room_id}/forward_extremities", s.handleDeleteForwardExtremities, false},
		{http.MethodGet, "/v1/rooms/{room_id}/block", s.handleRoomBlockStatus, false},
		{http.MethodPut, "/v1/rooms/{room_id}/block", s.handleBlockRoom, false},
		{http.MethodPost, "/v1/rooms/{room_id}/make_room_admin", s.handleMakeRoomAdmin, false},
		{http.MethodPost, "/v1/join/{room_id}", s.handleJoinRoom, false},
		{http.MethodDelete, "/v2/rooms/{room_id}", s.handleDeleteRoomV2, false},
		{http.MethodGet, "/v2/rooms/delete_status/{delete_id}", s.handleDeleteStatusByID, false},
		{http.MethodGet, "/v2/rooms/{room_id}/delete_status", s.handleDeleteStatusByRoom, false},
	}
}

// localSuffix is what the user IDs of this server end with.
func (s *Server) localSuffix() string { return ":" + string(s.rooms.ServerName()) }

// pathRoom returns the room named by the {room_id} path variable: 400 for a malformed room
// ID, 404 M_NOT_FOUND for a room this server does not know.
func (s *Server) pathRoom(r *http.Request) (*storage.Room, error) {
	roomID, err := httputil.PathRoomID(r, "room_id")
	if err != nil {
		return nil, err
	}
	return s.knownRoom(r.Context(), roomID)
}

// pathRoomOrAlias is pathRoom for the routes that also take a local room alias.
func (s *Server) pathRoomOrAlias(r *http.Request) (*storage.Room, error) {
	roomID, err := s.rooms.ResolveRoom(r.Context(), httputil.PathVar(r, "room_id"))
	if err != nil {
		return nil, err
	}
	return s.knownRoom(r.Context(), roomID)
}

func (s *Server) knownRoom(ctx context.Context, roomID string) (*storage.Room, error) {
	room, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("room not found")
	}
	return room, err
}

// roomEntry is a room of the room list: Synapse's fields, null where the room has no value.
type roomEntry struct {
	RoomID             string  `json:"room_id"`
	Name               *string `json:"name"`
	CanonicalAlias     *string `json:"canonical_alias"`
	JoinedMembers      int64   `json:"joined_members"`
	JoinedLocalMembers int64   `json:"joined_local_members"`
	Version            string  `json:"version"`
	Creator            *string `json:"creator"`
	Encryption         *string `json:"encryption"`
	Federatable        bool    `json:"federatable"`
	Public             bool    `json:"public"`
	JoinRules          *string `json:"join_rules"`
	GuestAccess        *string `json:"guest_access"`
	HistoryVisibility  *string `json:"history_visibility"`
	StateEvents        int64   `json:"state_events"`
	RoomType           *string `json:"room_type"`
}

// optString returns the string at path of js, or nil.
func optString(js gjson.Result, path string) *string {
	v := js.Get(path)
	if v.Type != gjson.String {
		return nil
	}
	str := v.String()
	return &str
}

func newRoomEntry(sum *storage.RoomSummary) roomEntry {
	content := func(typ, field string) *string { return optString(sum.State[typ], "content."+field) }
	create := sum.State["m.room.create"]
	e := roomEntry{
		RoomID: sum.RoomID, Version: sum.Version, Public: sum.Public,
		JoinedMembers: sum.JoinedMembers, JoinedLocalMembers: sum.JoinedLocalMembers, StateEvents: sum.StateEvents,
		Name:              content("m.room.name", "name"),
		CanonicalAlias:    content("m.room.canonical_alias", "alias"),
		Encryption:        content("m.room.encryption", "algorithm"),
		JoinRules:         content("m.room.join_rules", "join_rule"),
		GuestAccess:       content("m.room.guest_access", "guest_access"),
		HistoryVisibility: content("m.room.history_visibility", "history_visibility"),
		RoomType:          content("m.room.create", "type"),
		Creator:           optString(create, "content.creator"),
		Federatable:       create.Get(`content.m\.federate`).Type != gjson.False,
	}
	if e.Creator == nil {
		e.Creator = optString(create, "sender") // room versions 11 and later have no creator field
	}
	return e
}

// roomOrders maps each order_by value to a comparison (ascending in the sense Synapse
// sorts by it, before dir) of two room entries.
var roomOrders = map[string]func(a, b *roomEntry) int{
	"name":                 func(a, b *roomEntry) int { return cmpOptString(a.Name, b.Name) },
	"alphabetical":         func(a, b *roomEntry) int { return cmpOptString(a.Name, b.Name) },
	"canonical_alias":      func(a, b *roomEntry) int { return cmpOptString(a.CanonicalAlias, b.CanonicalAlias) },
	"joined_members":       func(a, b *roomEntry) int { return cmpInt(b.JoinedMembers, a.JoinedMembers) },
	"size":                 func(a, b *roomEntry) int { return cmpInt(b.JoinedMembers, a.JoinedMembers) },
	"joined_local_members": func(a, b *roomEntry) int { return cmpInt(b.JoinedLocalMembers, a.JoinedLocalMembers) },
	"version":              func(a, b *roomEntry) int { return strings.Compare(b.Version, a.Version) },
	"creator":              func(a, b *roomEntry) int { return cmpOptString(a.Creator, b.Creator) },
	"encryption":           func(a, b *roomEntry) int { return cmpOptString(a.Encryption, b.Encryption) },
	"federatable":          func(a, b *roomEntry) int { return cmpBool(a.Federatable, b.Federatable) },
	"public":               func(a, b *roomEntry) int { return cmpBool(a.Public, b.Public) },
	"join_rules":           func(a, b *roomEntry) int { return cmpOptString(a.JoinRules, b.JoinRules) },
	"guest_access":         func(a, b *roomEntry) int { return cmpOptString(a.GuestAccess, b.GuestAccess) },
	"history_visibility":   func(a, b *roomEntry) int { return cmpOptString(a.HistoryVisibility, b.HistoryVisibility) },
	"state_events":         func(a, b *roomEntry) int { return cmpInt(b.StateEvents, a.StateEvents) },
}

// cmpOptString orders strings alphabetically, rooms without a value last (as PostgreSQL
// sorts NULL).
func cmpOptString(a, b *string) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return strings.Compare(*a, *b)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// optBool reads an optional true/false query parameter.
func optBool(r *http.Request, name string) (*bool, error) {
	switch r.URL.Query().Get(name) {
	case "":
		return nil, nil
	case "true":
		t := true
		return &t, nil
	case "false":
		f := false
		return &f, nil
	}
	return nil, httputil.Errorf(http.StatusBadRequest, "M_INVALID_PARAM", "%s must be true or false", name)
}

// matchesSearch reports whether the room's name or the local part of its canonical alias
// contains term (ignoring case), or its room ID does (exactly).
func matchesSearch(e *roomEntry, term string) bool {
	lower := strings.ToLower(term)
	if e.Name != nil && strings.Contains(strings.ToLower(*e.Name), lower) {
		return true
	}
	if e.CanonicalAlias != nil {
		local, _, _ := strings.Cut(strings.TrimPrefix(*e.CanonicalAlias, "#"), ":")
		if strings.Contains(strings.ToLower(local), lower) {
			return true
		}
	}
	return strings.Contains(e.RoomID, term)
}

// handleListRooms handles GET /v1/rooms.
func (s *Server) handleListRooms(r *http.Request) (any, error) {
	from, limit, err := page(r, 100)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	orderBy := q.Get("order_by")
	if orderBy == "" {
		orderBy = "name"
	}
	order, ok := roomOrders[orderBy]
	if !ok {
		return nil, httputil.Errorf(http.StatusBadRequest, "M_INVALID_PARAM", "unknown order_by %q", orderBy)
	}
	dir := q.Get("dir")
	if dir != "" && dir != "f" && dir != "b" {
		return nil, httputil.Errorf(http.StatusBadRequest, "M_INVALID_PARAM", "dir must be f or b")
	}
	public, err := optBool(r, "public_rooms")
	if err != nil {
		return nil, err
	}
	empty, err := optBool(r, "empty_rooms")
	if err != nil {
		return nil, err
	}
	sums, err := s.db.RoomSummaries(r.Context(), s.localSuffix(), 0)
	if err != nil {
		return nil, err
	}
	term := q.Get("search_term")
	if q.Has("search_term") && term == "" {
		return nil, httputil.Errorf(http.StatusBadRequest, "M_INVALID_PARAM", "search_term cannot be an empty string")
	}
	entries := make([]roomEntry, 0, len(sums))
	for _, sum := range sums {
		e := newRoomEntry(sum)
		if (term != "" && !matchesSearch(&e, term)) || (public != nil && e.Public != *public) ||
			(empty != nil && (e.JoinedMembers == 0) != *empty) {
			continue
		}
		entries = append(entries, e)
	}
	sort.SliceStable(entries, func(i, j int) bool {
		c := order(&entries[i], &entries[j])
		if dir == "b" {
			c = -c
		}
		if c == 0 {
			return entries[i].RoomID < entries[j].RoomID
		}
		return c < 0
	})
	total := len(entries)
	pageEntries := entries[min(from, total):min(from+limit, total)]
	resp := map[string]any{"rooms": pageEntries, "offset": from, "total_rooms": total}
	if from+limit < total {
		resp["next_batch"] = from + limit
	}
	if from > 0 {
		resp["prev_batch"] = max(from-limit, 0)
	}
	return resp, nil
}

// handleRoomDetails handles GET /v1/rooms/{room_id}.
func (s *Server) handleRoomDetails(r *http.Request) (any, error) {
	ctx := r.Context()
	room, err := s.pathRoom(r)
	if err != nil {
		return nil, err
	}
	sums, err := s.db.RoomSummaries(ctx, s.localSuffix(), room.NID)
	if err != nil {
		return nil, err
	}
	if len(sums) == 0 {
		return nil, spec.NotFound("room not found")
	}
	devices, err := s.db.JoinedLocalDevices(ctx, room.NID)
	if err != nil {
		return nil, err
	}
	forgotten, err := s.db.ForgottenLocally(ctx, room.NID, s.localSuffix())
	if err != nil {
		return nil, err
	}
	return struct {
		roomEntry
		Avatar             *string `json:"avatar"`
		Topic              *string `json:"topic"`
		JoinedLocalDevices int64   `json:"joined_local_devices"`
		Forgotten          bool    `json:"forgotten"`
	}{
		roomEntry:          newRoomEntry(sums[0]),
		Avatar:             optString(sums[0].State["m.room.avatar"], "content.url"),
		Topic:              optString(sums[0].State["m.room.topic"], "content.topic"),
		JoinedLocalDevices: devices,
		Forgotten:          forgotten,
	}, nil
}

// handleRoomMembers handles GET /v1/rooms/{room_id}/members: the joined members.
func (s *Server) handleRoomMembers(r *http.Request) (any, error) {
	room, err := s.pathRoom(r)
	if err != nil {
		return nil, err
	}
	ms, err := s.db.RoomMembers(r.Context(), room.NID, spec.Join)
	if err != nil {
		return nil, err
	}
	members := make([]string, 0, len(ms))
	for _, m := range ms {
		members = append(members, m.UserID)
	}
	return map[string]any{"members": members, "total": len(members)}, nil
}

// handleRoomState handles GET /v1/rooms/{room_id}/state (optionally ?type=).
func (s *Server) handleRoomState(r *http.Request) (any, error) {
	ctx := r.Context()
	room, err := s.pathRoom(r)
	if err != nil {
		return nil, err
	}
	evs, err := s.db.CurrentStateEvents(ctx, room.NID, r.URL.Query().Get("type"))
	if err != nil {
		return nil, err
	}
	state, err := s.rooms.StateClientEvents(ctx, room.RoomID, evs, s.viewer(r))
	if err != nil {
		return nil, err
	}
	if state == nil {
		state = []roomserver.ClientEvent{}
	}
	return map[string]any{"state": state}, nil
}

// viewer is the admin, as events are formatted for them.
func (s *Server) viewer(r *http.Request) roomserver.Viewer {
	dev := httputil.Device(r.Context())
	return roomserver.Viewer{UserID: dev.UserID, DeviceID: dev.DeviceID}
}

// handleRoomBlockStatus handles GET /v1/rooms/{room_id}/block. The room need not be known.
func (s *Server) handleRoomBlockStatus(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "room_id")
	if err != nil {
		return nil, err
	}
	by, err := s.db.RoomBlockedBy(r.Context(), roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return map[string]any{"block": false}, nil
	} else if err != nil {
		return nil, err
	}
	return map[string]any{"block": true, "user_id": by}, nil
}

// handleBlockRoom handles PUT /v1/rooms/{room_id}/block {block}. A room may be blocked
// before this server knows it.
func (s *Server) handleBlockRoom(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "room_id")
	if err != nil {
		return nil, err
	}
	var body struct {
		Block *bool `json:"block"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Block == nil {
		return nil, httputil.Errorf(http.StatusBadRequest, "M_MISSING_PARAM", "block is required")
	}
	if err := s.rooms.SetRoomBlocked(r.Context(), httputil.Device(r.Context()).UserID, roomID, *body.Block); err != nil {
		return nil, err
	}
	s.audit(r, "block_room", "room_id", roomID, "block", *body.Block)
	return map[string]any{"block": *body.Block}, nil
}

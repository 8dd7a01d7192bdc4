package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver/ownedstate"
	"github.com/lattice-chat/lattice/storage"
)

// CreateRoomRequest is the body of POST /createRoom.
type CreateRoomRequest struct {
	Visibility                string         `json:"visibility"`
	RoomAliasName             string         `json:"room_alias_name"`
	Name                      *string        `json:"name"`
	Topic                     *string        `json:"topic"`
	Invite                    []string       `json:"invite"`
	RoomVersion               string         `json:"room_version"`
	CreationContent           map[string]any `json:"creation_content"`
	InitialState              []InitialState `json:"initial_state"`
	Preset                    string         `json:"preset"`
	IsDirect                  bool           `json:"is_direct"`
	PowerLevelContentOverride map[string]any `json:"power_level_content_override"`
}

// InitialState is one entry of createRoom's initial_state.
type InitialState struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// Preset names of createRoom.
const (
	PresetPrivateChat        = "private_chat"
	PresetPublicChat         = "public_chat"
	PresetTrustedPrivateChat = "trusted_private_chat"
)

// CreateRoom creates a room as the client-server API's createRoom describes: the create event,
// the creator's join, power levels, canonical alias, the preset's rules, initial_state, name,
// topic, then the invites.
func (s *Server) CreateRoom(ctx context.Context, userID, deviceID string, req CreateRoomRequest) (string, error) {
	if req.RoomVersion == "" {
		req.RoomVersion = string(s.cfg.DefaultVersion)
	}
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(req.RoomVersion))
	if err != nil {
		return "", spec.UnsupportedRoomVersion(fmt.Sprintf("room version %q is not supported", req.RoomVersion))
	}
	switch req.Visibility {
	case "", "private", "public":
	default:
		return "", spec.InvalidParam("visibility must be public or private")
	}
	if req.Preset == "" {
		req.Preset = PresetPrivateChat
		if req.Visibility == "public" {
			req.Preset = PresetPublicChat
		}
	}
	switch req.Preset {
	case PresetPrivateChat, PresetPublicChat, PresetTrustedPrivateChat:
	default:
		return "", spec.InvalidParam("unknown preset")
	}
	for _, u := range req.Invite {
		if _, err := spec.NewUserID(u, true); err != nil {
			return "", spec.InvalidParam(fmt.Sprintf("invalid user ID %q", u))
		}
		// MSC4155 (the unstable config's revision) refuses createRoom when a local invitee
		// blocks the creator, before the room exists. The spec's m.invite_permission_config
		// (v1.18) instead lets the room be created without that invitee: see below.
		if s.isLocal(u) {
			if p := s.InvitePermissions(ctx, u); !p.BlocksAll() && p.Verdict(userID) == InviteBlock {
				return "", ErrInviteBlocked
			}
		}
	}
	alias := ""
	if req.RoomAliasName != "" {
		if strings.ContainsAny(req.RoomAliasName, ":# ") {
			return "", spec.InvalidParam("room_alias_name must be a bare localpart")
		}
		alias = "#" + req.RoomAliasName + ":" + string(s.cfg.ServerName)
		if _, _, err := s.db.Alias(ctx, alias); err == nil {
			return "", spec.RoomInUse("room alias already taken")
		}
	}

	r, roomID, err := s.createRoomRow(ctx, userID, ver, req)
	if err != nil {
		return "", err
	}
	defer r.unlock()

	for _, ev := range s.initialEvents(userID, alias, ver, req) {
		content, err := json.Marshal(ev.Content)
		if err != nil {
			return "", spec.BadJSON(err.Error())
		}
		if raw, ok := ev.Content.(json.RawMessage); ok {
			content = raw
		}
		sk := ev.StateKey
		if _, err := s.submit(ctx, r, eventRequest{Sender: userID, Type: ev.Type, StateKey: &sk, Content: content}); err != nil {
			return "", fmt.Errorf("createRoom %s: %w", ev.Type, err)
		}
	}
	if alias != "" {
		err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.InsertAlias(ctx, alias, roomID, userID) })
		if errors.Is(err, storage.ErrConflict) {
			return "", spec.RoomInUse("room alias already taken")
		} else if err != nil {
			return "", err
		}
	}
	if req.Visibility == "public" {
		if err := s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.SetRoomVisibility(ctx, r.nid, "public") }); err != nil {
			return "", err
		}
	}
	for _, invitee := range req.Invite {
		if err := s.invite(ctx, r, userID, invitee, "", req.IsDirect); errors.Is(err, ErrInviteBlocked) {
			continue // the spec (v1.18): the room is created without that invitee
		} else if err != nil {
			return "", err
		}
	}
	return roomID, nil
}

// createRoomRow builds the create event and stores the room, returning it locked. In room
// version 12 the room ID is the create event's hash, so two rooms created by the same user
// with the same content in the same millisecond would be one: each create event of this
// process gets a later timestamp than the one before, and a collision with another process's
// room is retried with a new timestamp.
func (s *Server) createRoomRow(ctx context.Context, userID string, ver gomatrixserverlib.IRoomVersion, req CreateRoomRequest) (*room, string, error) {
	for attempt := 0; ; attempt++ {
		create, err := s.createEvent(userID, ver, req, s.createTime())
		if err != nil {
			return nil, "", err
		}
		roomID := create.RoomID().String()
		r, err := s.insertRoom(ctx, roomID, ver, create)
		var me spec.MatrixError
		// RoomInUse: a room of this process has the ID; ErrConflict: a room of another
		// process sharing the database (its create event was the same, to the millisecond).
		inUse := errors.As(err, &me) && me.ErrCode == spec.ErrorRoomInUse || errors.Is(err, storage.ErrConflict)
		if err != nil && ver.DomainlessRoomIDs() && attempt < 5 && inUse {
			continue
		}
		return r, roomID, err
	}
}

// createTime returns now, or 1 ms after the last create event's timestamp when that is later.
func (s *Server) createTime() time.Time {
	for {
		last := s.lastCreate.Load()
		ms := max(s.now().UnixMilli(), last+1)
		if s.lastCreate.CompareAndSwap(last, ms) {
			return time.UnixMilli(ms)
		}
	}
}

// createEvent builds the m.room.create event. In room versions with domainless room IDs (12)
// the room ID is the create event's reference hash, so the event is built without one.
func (s *Server) createEvent(userID string, ver gomatrixserverlib.IRoomVersion, req CreateRoomRequest, ts time.Time) (gomatrixserverlib.PDU, error) {
	content := map[string]any{}
	for k, v := range req.CreationContent {
		content[k] = v
	}
	content["room_version"] = string(ver.Version())
	switch ownedstate.Base(ver.Version()) {
	case gomatrixserverlib.RoomVersionV1, gomatrixserverlib.RoomVersionV2, gomatrixserverlib.RoomVersionV3,
		gomatrixserverlib.RoomVersionV4, gomatrixserverlib.RoomVersionV5, gomatrixserverlib.RoomVersionV6,
		gomatrixserverlib.RoomVersionV7, gomatrixserverlib.RoomVersionV8, gomatrixserverlib.RoomVersionV9,
		gomatrixserverlib.RoomVersionV10:
		content["creator"] = userID
	default:
		delete(content, "creator")
	}
	if ver.PrivilegedCreators() && req.Preset == PresetTrustedPrivateChat && len(req.Invite) > 0 {
		extra, _ := content["additional_creators"].([]any)
		for _, u := range req.Invite {
			extra = append(extra, u)
		}
		content["additional_creators"] = extra
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, spec.BadJSON(err.Error())
	}
	if err := checkCanonicalNumbers(raw); err != nil {
		return nil, err
	}
	roomID := ""
	if !ver.DomainlessRoomIDs() {
		roomID = "!" + randomString(18) + ":" + string(s.cfg.ServerName)
	}
	empty := ""
	proto := gomatrixserverlib.ProtoEvent{
		SenderID: userID, RoomID: roomID, Type: spec.MRoomCreate, StateKey: &empty,
		Content: raw, Depth: 1, PrevEvents: []string{}, AuthEvents: []string{},
	}
	pdu, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(ts, s.cfg.ServerName, s.cfg.KeyID, s.cfg.PrivateKey)
	if err != nil {
		return nil, buildError(err)
	}
	if err := gomatrixserverlib.Allowed(pdu, &gomatrixserverlib.AuthEvents{}, userIDForSender); err != nil {
		return nil, spec.BadJSON(err.Error())
	}
	return pdu, nil
}

// insertRoom stores the room row and its create event, returning the room locked.
func (s *Server) insertRoom(ctx context.Context, roomID string, ver gomatrixserverlib.IRoomVersion, create gomatrixserverlib.PDU) (*room, error) {
	r := &room{id: roomID, version: ver, state: map[int64]int64{}, members: map[string]string{}, loaded: true}
	r.mu.Lock()
	s.mu.Lock()
	if _, exists := s.rooms[roomID]; exists {
		s.mu.Unlock()
		r.unlock()
		return nil, spec.RoomInUse("room already exists")
	}
	s.rooms[roomID] = r
	s.mu.Unlock()
	err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
		nid, err := tx.InsertRoom(ctx, roomID, string(ver.Version()), int64(create.OriginServerTS()))
		r.nid = nid
		return err
	})
	if err == nil {
		_, err = s.persist(ctx, r, []*pending{{pdu: create}})
	}
	if err != nil {
		s.mu.Lock()
		delete(s.rooms, roomID)
		s.mu.Unlock()
		r.unlock()
		return nil, err
	}
	return r, nil
}

type initialEvent struct {
	Type     string
	StateKey string
	Content  any
}

// initialEvents lists the state events createRoom sends after the create event, in the spec's order.
func (s *Server) initialEvents(userID, alias string, ver gomatrixserverlib.IRoomVersion, req CreateRoomRequest) []initialEvent {
	member := map[string]any{"membership": spec.Join}
	if p, err := s.db.Profile(context.Background(), userID); err == nil {
		if p.DisplayName != "" {
			member["displayname"] = p.DisplayName
		}
		if p.AvatarURL != "" {
			member["avatar_url"] = p.AvatarURL
		}
	}
	evs := []initialEvent{{Type: spec.MRoomMember, StateKey: userID, Content: member}}
	evs = append(evs, initialEvent{Type: spec.MRoomPowerLevels, Content: s.initialPowerLevels(userID, ver, req)})
	if alias != "" {
		evs = append(evs, initialEvent{Type: "m.room.canonical_alias", Content: map[string]any{"alias": alias}})
	}
	joinRule, guest := spec.Invite, "can_join"
	if req.Preset == PresetPublicChat {
		joinRule, guest = spec.Public, ""
	}
	evs = append(evs, initialEvent{Type: spec.MRoomJoinRules, Content: map[string]any{"join_rule": joinRule}})
	evs = append(evs, initialEvent{Type: spec.MRoomHistoryVisibility, Content: map[string]any{"history_visibility": "shared"}})
	if guest != "" {
		evs = append(evs, initialEvent{Type: "m.room.guest_access", Content: map[string]any{"guest_access": guest}})
	}
	for _, st := range req.InitialState {
		content := st.Content
		if len(content) == 0 {
			content = json.RawMessage("{}")
		}
		evs = append(evs, initialEvent{Type: st.Type, StateKey: st.StateKey, Content: content})
	}
	if req.Name != nil {
		evs = append(evs, initialEvent{Type: "m.room.name", Content: map[string]any{"name": *req.Name}})
	}
	if req.Topic != nil {
		// Since v1.15 the topic also has a rich representation (m.topic with an m.text block);
		// the plain "topic" duplicates its text/plain body, as the event schema asks.
		evs = append(evs, initialEvent{Type: "m.room.topic", Content: map[string]any{
			"topic":   *req.Topic,
			"m.topic": map[string]any{"m.text": []map[string]string{{"mimetype": "text/plain", "body": *req.Topic}}},
		}})
	}
	return evs
}

// initialPowerLevels returns the default power levels with the client's override applied.
// In v12 rooms creators have infinite power and must not be listed in users.
func (s *Server) initialPowerLevels(userID string, ver gomatrixserverlib.IRoomVersion, req CreateRoomRequest) map[string]any {
	users := map[string]any{}
	if !ver.PrivilegedCreators() {
		users[userID] = 100
	}
	if req.Preset == PresetTrustedPrivateChat && !ver.PrivilegedCreators() {
		for _, u := range req.Invite {
			users[u] = 100
		}
	}
	pl := map[string]any{
		"users":          users,
		"users_default":  0,
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         0,
		"events": map[string]any{
			"m.room.name":               50,
			"m.room.power_levels":       100,
			"m.room.history_visibility": 100,
			"m.room.canonical_alias":    50,
			"m.room.avatar":             50,
			"m.room.tombstone":          100,
			"m.room.server_acl":         100,
			"m.room.encryption":         100,
		},
		"notifications": map[string]any{"room": 50},
	}
	if req.Preset == PresetPublicChat {
		pl["invite"] = 50
	}
	for k, v := range req.PowerLevelContentOverride {
		pl[k] = v
	}
	return pl
}

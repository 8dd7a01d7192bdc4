// Package spaces summarises rooms for the spaces module: the room summary of
// definitions/room_summary.yaml built from this server's current state of a room, the
// m.space.child events that make the room a space, the order of a space's children, and the
// Server-Server /hierarchy answer. Both the Client-Server /hierarchy and /room_summary and
// the Server-Server /hierarchy build on it. Who may see a summary depends on who asks (a
// user or a server), so that is left to the callers.
//
// It reads storage only and must not import net/http, roomserver or any HTTP surface.
package spaces

import (
	"context"
	"encoding/json"
	"errors"
	"sort"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/publicrooms"
	"github.com/lattice-chat/lattice/storage"
)

// ErrUnknown is returned by Load for a room this server has no usable state of: it has
// never been in it, or none of its users is joined any more (the state held may be stale).
var ErrUnknown = errors.New("room unknown to this server")

// Summary is a room as room_summary.yaml describes it, with the m.space.child events that
// make it a space.
type Summary struct {
	// Chunk holds the summary's fields, without membership and children_state (which
	// depend on who asks and on the endpoint).
	Chunk map[string]any
	// Children are the m.space.child events with a non-empty via.
	Children []Child
}

// Child is one m.space.child state event with a non-empty via (the others are removed
// children, as the spaces module says).
type Child struct {
	RoomID    string
	Via       []string
	Order     string
	Suggested bool
	TS        int64
	// Stripped is the event as children_state lists it: a stripped state event with
	// origin_server_ts.
	Stripped map[string]any
}

// JoinRule returns the room's join rule.
func (s *Summary) JoinRule() string {
	rule, _ := s.Chunk["join_rule"].(string)
	return rule
}

// WorldReadable reports whether the room's history is world-readable.
func (s *Summary) WorldReadable() bool { return s.Chunk["world_readable"] == true }

// AllowedRoomIDs returns the rooms a restricted join rule allows joining from.
func (s *Summary) AllowedRoomIDs() []string {
	var out []string
	switch ids := s.Chunk["allowed_room_ids"].(type) {
	case []string:
		out = ids
	case []any:
		for _, id := range ids {
			if s, ok := id.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// Joinable reports whether anyone may join or knock without more checks: the join rule is
// public, knock or knock_restricted.
func (s *Summary) Joinable() bool {
	rule := s.JoinRule()
	return rule == spec.Public || rule == spec.Knock || rule == spec.KnockRestricted
}

// Restricted reports whether joining depends on membership of AllowedRoomIDs.
func (s *Summary) Restricted() bool {
	rule := s.JoinRule()
	return rule == spec.Restricted || rule == spec.KnockRestricted
}

// WithChildrenState returns a copy of the summary's fields with children_state: a room of
// a /hierarchy answer.
func (s *Summary) WithChildrenState() map[string]any {
	chunk := make(map[string]any, len(s.Chunk)+1)
	for k, v := range s.Chunk {
		chunk[k] = v
	}
	states := make([]map[string]any, 0, len(s.Children))
	for _, c := range s.Children {
		states = append(states, c.Stripped)
	}
	chunk["children_state"] = states
	return chunk
}

// Load describes roomID from this server's current state of it. It is ErrUnknown when this
// server has no joined user in the room.
func Load(ctx context.Context, db *storage.DB, roomID string) (*Summary, error) {
	room, err := db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrUnknown
	} else if err != nil {
		return nil, err
	}
	joined, err := db.RoomMembers(ctx, room.NID, spec.Join)
	if err != nil {
		return nil, err
	}
	if len(joined) == 0 {
		return nil, ErrUnknown
	}
	chunk, err := publicrooms.Entry(ctx, db, storage.PublicRoom{NID: room.NID, RoomID: roomID, JoinedMembers: len(joined)})
	if err != nil {
		return nil, err
	}
	chunk["room_version"] = room.Version
	evs, err := db.CurrentStateEvents(ctx, room.NID, "")
	if err != nil {
		return nil, err
	}
	out := &Summary{Chunk: chunk}
	allow := []string{}
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
			if *f.StateKey == "" {
				allow = allowedRooms(f.Content)
			}
		case "m.space.child":
			if c, ok := child(*f.StateKey, f.Content, ev.Sender, ev.OriginTS); ok {
				out.Children = append(out.Children, c)
			}
		}
	}
	if out.Restricted() {
		chunk["allowed_room_ids"] = allow
	}
	if chunk["room_type"] != "m.space" {
		// Only a space has children: m.space.child events in any other room are not part of
		// a hierarchy (client-server "Spaces": a space is a room with type m.space).
		out.Children = nil
	}
	return out, nil
}

// allowedRooms returns the rooms of a join rule's allow list (m.room_membership entries).
func allowedRooms(content map[string]any) []string {
	out := []string{}
	rules, _ := content["allow"].([]any)
	for _, a := range rules {
		if m, ok := a.(map[string]any); ok && m["type"] == "m.room_membership" {
			if id, ok := m["room_id"].(string); ok {
				out = append(out, id)
			}
		}
	}
	return out
}

// child reads an m.space.child event; false for a removed child (no via) or a malformed one.
func child(stateKey string, content map[string]any, sender string, ts int64) (Child, bool) {
	rawVia, _ := content["via"].([]any)
	if len(rawVia) == 0 || stateKey == "" {
		return Child{}, false
	}
	c := Child{RoomID: stateKey, TS: ts, Stripped: map[string]any{
		"type": "m.space.child", "state_key": stateKey, "content": content, "sender": sender, "origin_server_ts": ts,
	}}
	for _, v := range rawVia {
		if s, ok := v.(string); ok && s != "" {
			c.Via = append(c.Via, s)
		}
	}
	c.Order, _ = content["order"].(string)
	c.Suggested, _ = content["suggested"].(bool)
	return c, true
}

// Order sorts a space's children as the spaces module says: those with a valid order (at
// most 50 characters between \x20 and \x7E) first, by order; then by the m.space.child
// event's origin_server_ts; ties by room ID.
func Order(cs []Child) []Child {
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
	out := append([]Child(nil), cs...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		va, vb := valid(a.Order), valid(b.Order)
		if va != vb {
			return va
		}
		if va && a.Order != b.Order {
			return a.Order < b.Order
		}
		if a.TS != b.TS {
			return a.TS < b.TS
		}
		return a.RoomID < b.RoomID
	})
	return out
}

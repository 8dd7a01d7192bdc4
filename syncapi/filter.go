package syncapi

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Filter is the spec's Filter (sync_filter.yaml); decoding it checks every field's type.
type Filter struct {
	AccountData EventFilter `json:"account_data"`
	Presence    EventFilter `json:"presence"`
	Room        RoomFilter  `json:"room"`
	EventFields []string    `json:"event_fields"`
	EventFormat string      `json:"event_format"`
}

// RoomFilter filters the rooms section of /sync.
type RoomFilter struct {
	Rooms        *[]string       `json:"rooms"`
	NotRooms     []string        `json:"not_rooms"`
	IncludeLeave bool            `json:"include_leave"`
	Timeline     RoomEventFilter `json:"timeline"`
	State        RoomEventFilter `json:"state"`
	Ephemeral    RoomEventFilter `json:"ephemeral"`
	AccountData  RoomEventFilter `json:"account_data"`
}

// EventFilter is the spec's EventFilter.
type EventFilter struct {
	Limit      *int      `json:"limit"`
	Types      *[]string `json:"types"`
	NotTypes   []string  `json:"not_types"`
	Senders    *[]string `json:"senders"`
	NotSenders []string  `json:"not_senders"`
}

// RoomEventFilter is the spec's RoomEventFilter.
type RoomEventFilter struct {
	EventFilter
	LazyLoadMembers         bool      `json:"lazy_load_members"`
	IncludeRedundantMembers bool      `json:"include_redundant_members"`
	Rooms                   *[]string `json:"rooms"`
	NotRooms                []string  `json:"not_rooms"`
	ContainsURL             *bool     `json:"contains_url"`
	// UnreadThreadNotifications asks /sync for notification counts per thread (unread.go).
	UnreadThreadNotifications bool `json:"unread_thread_notifications"`
	// RelTypes and NotRelTypes (MSC3874) keep or drop events by their m.relates_to.rel_type,
	// under the MSC's stable names and the org.matrix.msc3874 names clients send today.
	RelTypes            *[]string `json:"rel_types"`
	NotRelTypes         []string  `json:"not_rel_types"`
	UnstableRelTypes    *[]string `json:"org.matrix.msc3874.rel_types"`
	UnstableNotRelTypes []string  `json:"org.matrix.msc3874.not_rel_types"`
}

// loadFilter resolves the filter parameter: inline JSON (starting with "{") or a stored ID.
func loadFilter(ctx context.Context, db *storage.DB, userID, param string) (Filter, error) {
	var f Filter
	if param == "" {
		return f, nil
	}
	raw := param
	if !strings.HasPrefix(strings.TrimSpace(param), "{") {
		id, err := strconv.ParseInt(param, 10, 64)
		if err != nil {
			return f, spec.InvalidParam("filter is neither JSON nor a filter ID")
		}
		raw, err = db.Filter(ctx, userID, id)
		if errors.Is(err, storage.ErrNotFound) {
			return f, spec.NotFound("unknown filter")
		} else if err != nil {
			return f, err
		}
	}
	return parseFilter([]byte(raw))
}

// parseRoomEventFilter decodes the filter query parameter of /messages and /context.
func parseRoomEventFilter(param string) (RoomEventFilter, error) {
	var f RoomEventFilter
	if param == "" {
		return f, nil
	}
	if err := httputil.UnmarshalObject([]byte(param), &f); err != nil {
		return f, err
	}
	return f, f.validate("filter")
}

// allowsRoom reports whether a room passes rooms / not_rooms.
func allowsRoom(rooms *[]string, notRooms []string, roomID string) bool {
	for _, r := range notRooms {
		if r == roomID {
			return false
		}
	}
	if rooms == nil {
		return true
	}
	for _, r := range *rooms {
		if r == roomID {
			return true
		}
	}
	return false
}

// allowsEvent reports whether ev passes the filter's types, senders and contains_url
// (room_event_filter.yaml: "If true, includes only events with a url key in their content.
// If false, excludes those events.") and the relation types of MSC3874.
func (f RoomEventFilter) allowsEvent(ev *storage.Event) bool {
	if !f.allows(ev.Type, ev.Sender) {
		return false
	}
	if f.ContainsURL != nil && gjson.GetBytes(ev.JSON, "content.url").Exists() != *f.ContainsURL {
		return false
	}
	return f.allowsRelation(ev)
}

// allowsRelation applies MSC3874: with rel_types, only events whose rel_type is listed pass
// (an event without a relation never does); an event whose rel_type is in not_rel_types is
// dropped. The stable and unstable names add up.
func (f RoomEventFilter) allowsRelation(ev *storage.Event) bool {
	if f.RelTypes == nil && f.UnstableRelTypes == nil && len(f.NotRelTypes)+len(f.UnstableNotRelTypes) == 0 {
		return true
	}
	relType := gjson.GetBytes(ev.JSON, `content.m\.relates_to.rel_type`).String()
	if relType != "" && (slices.Contains(f.NotRelTypes, relType) || slices.Contains(f.UnstableNotRelTypes, relType)) {
		return false
	}
	if f.RelTypes == nil && f.UnstableRelTypes == nil {
		return true
	}
	return relType != "" && (slices.Contains(deref(f.RelTypes), relType) || slices.Contains(deref(f.UnstableRelTypes), relType))
}

// allows reports whether an event of this type and sender passes the filter.
func (f EventFilter) allows(evType, sender string) bool {
	for _, t := range f.NotTypes {
		if matchType(t, evType) {
			return false
		}
	}
	for _, s := range f.NotSenders {
		if s == sender {
			return false
		}
	}
	if f.Senders != nil {
		ok := false
		for _, s := range *f.Senders {
			ok = ok || s == sender
		}
		if !ok {
			return false
		}
	}
	if f.Types != nil {
		for _, t := range *f.Types {
			if matchType(t, evType) {
				return true
			}
		}
		return false
	}
	return true
}

// matchType matches an event type against a filter pattern where "*" is a wildcard.
func matchType(pattern, evType string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == evType
	}
	prefix, _, _ := strings.Cut(pattern, "*")
	return strings.HasPrefix(evType, prefix)
}

// limit returns the filter's limit bounded to [1, max], or def.
func (f EventFilter) limit(def, max int) int {
	if f.Limit == nil {
		return def
	}
	// 0 is a real limit: clients ask for rooms' state without any timeline events.
	return min(*f.Limit, max)
}

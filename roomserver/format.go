package roomserver

import (
	"context"
	"encoding/json"
	"strings"
	"time"
	"unsafe"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/lattice-chat/lattice/storage"
)

// Viewer is who an event is formatted for: transaction_id is shown only to the sending
// device, and the events of ignored users are left out of aggregations.
type Viewer struct {
	UserID   string
	DeviceID string
	Ignored  map[string]bool
}

// ClientEvent is an event in the client-server API's ClientEvent format.
type ClientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        string          `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         string          `json:"room_id,omitempty"`
	Sender         string          `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	Redacts        string          `json:"redacts,omitempty"`
	// Sticky and MSC4354Sticky are the sticky object of a sticky event (MSC4354), stable and
	// unstable name, as the event carries it.
	Sticky        json.RawMessage `json:"sticky,omitempty"`
	MSC4354Sticky json.RawMessage `json:"msc4354_sticky,omitempty"`
	Unsigned      map[string]any  `json:"unsigned,omitempty"`
}

type pduFields struct {
	Type           string          `json:"type"`
	StateKey       *string         `json:"state_key"`
	Content        json.RawMessage `json:"content"`
	Sender         string          `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts"`
	Redacts        string          `json:"redacts"`
	Sticky         json.RawMessage `json:"sticky"`
	MSC4354Sticky  json.RawMessage `json:"msc4354_sticky"`
	Unsigned       map[string]any  `json:"unsigned"`
}

// ClientEvents formats events of one room for a client, with unsigned age, transaction_id,
// prev_content, replaces_state, redacted_because and the bundled aggregations of their
// child events (m.relations).
func (s *Server) ClientEvents(ctx context.Context, roomID string, evs []*storage.Event, v Viewer) ([]ClientEvent, error) {
	return s.clientEvents(ctx, s.db, roomID, evs, v, true, true)
}

// ClientEventsFrom is ClientEvents reading the other events it needs (the state events the
// formatted ones replaced, the viewer's membership before them) through r: a caller that
// read them ahead for many rooms (an initial /sync) saves a statement per room.
func (s *Server) ClientEventsFrom(ctx context.Context, r eventReader, roomID string, evs []*storage.Event, v Viewer) ([]ClientEvent, error) {
	return s.clientEvents(ctx, r, roomID, evs, v, true, true)
}

// StateClientEventsFrom is StateClientEvents reading through r, as ClientEventsFrom.
func (s *Server) StateClientEventsFrom(ctx context.Context, r eventReader, roomID string, evs []*storage.Event, v Viewer) ([]ClientEvent, error) {
	return s.clientEvents(ctx, r, roomID, evs, v, true, false)
}

// StateClientEvents formats state events listed as a room's state (/state, /members, the
// state sections of /sync and /context) rather than as history: without unsigned.membership,
// which describes the viewer at each event's point in the timeline ("servers MAY omit it if
// calculating the value is expensive", client_event.yaml) and would cost one state lookup per
// event, each member event of a room being at a different point.
func (s *Server) StateClientEvents(ctx context.Context, roomID string, evs []*storage.Event, v Viewer) ([]ClientEvent, error) {
	return s.clientEvents(ctx, s.db, roomID, evs, v, true, false)
}

func (s *Server) clientEvents(ctx context.Context, db eventReader, roomID string, evs []*storage.Event, v Viewer, aggregate, withMembership bool) ([]ClientEvent, error) {
	var replaced []int64
	for _, ev := range evs {
		if ev.ReplacesNID != 0 {
			replaced = append(replaced, ev.ReplacesNID)
		}
	}
	prev := map[int64]*storage.Event{}
	if len(replaced) > 0 {
		rows, err := db.EventsByNID(ctx, replaced)
		if err != nil {
			return nil, err
		}
		for _, p := range rows {
			prev[p.NID] = p
		}
	}
	var memberships map[int64]string
	if v.UserID != "" && withMembership {
		var err error
		if memberships, err = s.viewerMemberships(ctx, db, evs, v.UserID); err != nil {
			return nil, err
		}
	}
	now := s.now().UnixMilli()
	out := make([]ClientEvent, 0, len(evs))
	for _, ev := range evs {
		ce, err := s.clientEvent(ctx, roomID, ev, prev[ev.ReplacesNID], v, now)
		if err != nil {
			return nil, err
		}
		if m, ok := memberships[ev.NID]; ok {
			ce.Unsigned["membership"] = m
		}
		out = append(out, ce)
	}
	if aggregate && len(out) > 0 {
		if err := s.bundleAggregations(ctx, roomID, evs, out, v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ClientEvent formats one event for a client.
func (s *Server) ClientEvent(ctx context.Context, roomID string, ev *storage.Event, v Viewer) (ClientEvent, error) {
	evs, err := s.ClientEvents(ctx, roomID, []*storage.Event{ev}, v)
	if err != nil {
		return ClientEvent{}, err
	}
	return evs[0], nil
}

// parsePDU reads the fields a client sees from an event's stored JSON. The JSON is the
// server's own (checked when the event was received or built), so the fields are picked in
// one pass with gjson rather than decoded whole: an initial sync formats tens of thousands of
// events.
func parsePDU(js []byte) (pduFields, error) {
	var f pduFields
	if len(js) == 0 {
		err := json.Unmarshal(js, &f) // for its error
		return f, err
	}
	// Parsed in place (gjson.ParseBytes would copy the event): the strings kept are cloned,
	// the content copied.
	root := gjson.Parse(unsafe.String(&js[0], len(js)))
	if !root.IsObject() {
		err := json.Unmarshal(js, &f) // for its error
		return f, err
	}
	var err error
	root.ForEach(func(key, value gjson.Result) bool {
		switch key.Str {
		case "type":
			f.Type = strings.Clone(value.String())
		case "state_key":
			if value.Type == gjson.String {
				sk := strings.Clone(value.Str)
				f.StateKey = &sk
			}
		case "content":
			f.Content = json.RawMessage(value.Raw)
		case "sender":
			f.Sender = strings.Clone(value.String())
		case "origin_server_ts":
			f.OriginServerTS = value.Int()
		case "redacts":
			f.Redacts = strings.Clone(value.String())
		case "sticky":
			f.Sticky = json.RawMessage(value.Raw)
		case "msc4354_sticky":
			f.MSC4354Sticky = json.RawMessage(value.Raw)
		case "unsigned":
			if value.IsObject() {
				err = json.Unmarshal([]byte(value.Raw), &f.Unsigned)
			}
		}
		return err == nil
	})
	return f, err
}

func (s *Server) clientEvent(ctx context.Context, roomID string, ev, prev *storage.Event, v Viewer, now int64) (ClientEvent, error) {
	f, err := parsePDU(ev.JSON)
	if err != nil {
		return ClientEvent{}, err
	}
	unsigned := map[string]any{}
	for k, val := range f.Unsigned {
		unsigned[k] = val
	}
	unsigned["age"] = max(now-f.OriginServerTS, 0)
	if ttl, ok := stickyRemaining(f.Sticky, f.MSC4354Sticky, f.OriginServerTS, now); ok {
		unsigned["msc4354_sticky_duration_ttl_ms"] = ttl
	}
	if delayID, ok := strings.CutPrefix(ev.TxnID, DelayedTxnPrefix); ok && ev.TxnDevice == "" {
		// A delayed event (MSC4140) tells its sender, on any device, which delay it was.
		if ev.Sender == v.UserID {
			unsigned["org.matrix.msc4140.delay_id"] = delayID
		}
	} else if ev.TxnID != "" && ev.Sender == v.UserID && ev.TxnDevice == v.DeviceID {
		unsigned["transaction_id"] = ev.TxnID
	}
	if prev != nil {
		if pf, err := parsePDU(prev.JSON); err == nil {
			unsigned["prev_content"] = pf.Content
			unsigned["prev_sender"] = pf.Sender
			unsigned["replaces_state"] = prev.EventID
		}
	}
	if ev.RedactedBy != "" {
		if red, err := s.db.Event(ctx, ev.RedactedBy); err == nil {
			if rce, err := s.clientEvent(ctx, roomID, red, nil, v, now); err == nil {
				unsigned["redacted_because"] = rce
			}
		}
	}
	content := f.Content
	if len(content) == 0 {
		content = json.RawMessage("{}")
	}
	redacts, content := redactsBothWays(f.Type, f.Redacts, content)
	return ClientEvent{
		Content:        content,
		EventID:        ev.EventID,
		OriginServerTS: f.OriginServerTS,
		RoomID:         roomID,
		Sender:         f.Sender,
		StateKey:       f.StateKey,
		Type:           f.Type,
		Redacts:        redacts,
		Sticky:         f.Sticky,
		MSC4354Sticky:  f.MSC4354Sticky,
		Unsigned:       unsigned,
	}, nil
}

// redactsBothWays returns the top-level redacts and the content of an m.room.redaction event
// for a client, each naming the redacted event. Room version 11 moved redacts from the top
// level into content; servers should add it at the top level for older clients and, in older
// room versions, in content for newer clients (room version 11, "Moving the redacts property
// of m.room.redaction events to a content property").
func redactsBothWays(evType, redacts string, content json.RawMessage) (string, json.RawMessage) {
	if evType != spec.MRoomRedaction {
		return redacts, content
	}
	inContent := gjson.GetBytes(content, "redacts")
	switch {
	case redacts == "" && inContent.Type == gjson.String:
		return inContent.Str, content
	case redacts != "" && !inContent.Exists():
		if c, err := sjson.SetBytes(content, "redacts", redacts); err == nil {
			return redacts, c
		}
	}
	return redacts, content
}

// Now returns the roomserver's clock, for callers that compute ages.
func (s *Server) Now() time.Time { return s.now() }

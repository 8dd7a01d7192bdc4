package adminapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// eventFilter is the part of a RoomEventFilter the admin API's messages and context apply:
// types, senders and contains_url ("*" in a type matches any run of characters).
type eventFilter struct {
	Types       *[]string `json:"types"`
	NotTypes    []string  `json:"not_types"`
	Senders     *[]string `json:"senders"`
	NotSenders  []string  `json:"not_senders"`
	ContainsURL *bool     `json:"contains_url"`
}

func parseEventFilter(r *http.Request) (eventFilter, error) {
	var f eventFilter
	if raw := r.URL.Query().Get("filter"); raw != "" {
		if err := httputil.UnmarshalObject([]byte(raw), &f); err != nil {
			return f, err
		}
	}
	return f, nil
}

func typeMatches(pattern, typ string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == typ
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(typ, parts[0]) {
		return false
	}
	typ = typ[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(typ, p)
		if i < 0 {
			return false
		}
		typ = typ[i+len(p):]
	}
	return strings.HasSuffix(typ, parts[len(parts)-1])
}

func anyMatches(patterns []string, v string, match func(string, string) bool) bool {
	for _, p := range patterns {
		if match(p, v) {
			return true
		}
	}
	return false
}

func equal(a, b string) bool { return a == b }

func (f eventFilter) allows(ev *storage.Event) bool {
	if anyMatches(f.NotTypes, ev.Type, typeMatches) || anyMatches(f.NotSenders, ev.Sender, equal) {
		return false
	}
	if f.Types != nil && !anyMatches(*f.Types, ev.Type, typeMatches) {
		return false
	}
	if f.Senders != nil && !anyMatches(*f.Senders, ev.Sender, equal) {
		return false
	}
	return f.ContainsURL == nil || gjson.GetBytes(ev.JSON, "content.url").Exists() == *f.ContainsURL
}

// eventLimit reads the limit query parameter (default def, at most 1000).
func eventLimit(r *http.Request, def int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, spec.InvalidParam("limit must be a non-negative integer")
	}
	return min(n, 1000), nil
}

// maxMessagesScan bounds the events one messages request reads to fill a filtered page.
const maxMessagesScan = 5000

// handleRoomMessages handles GET /v1/rooms/{room_id}/messages: the client API's /messages,
// paging through every event of the room's history whatever the admin's membership.
func (s *Server) handleRoomMessages(r *http.Request) (any, error) {
	ctx := r.Context()
	room, err := s.pathRoom(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir == "" {
		dir = "f"
	}
	if dir != "b" && dir != "f" {
		return nil, spec.InvalidParam("dir must be b or f")
	}
	backwards := dir == "b"
	limit, err := eventLimit(r, 10)
	if err != nil {
		return nil, err
	}
	limit = max(limit, 1)
	filter, err := parseEventFilter(r)
	if err != nil {
		return nil, err
	}
	from := storage.Plain(storage.TopoStart)
	if backwards {
		from = storage.Plain(storage.TopoEnd)
	}
	if t := q.Get("from"); t != "" {
		var ok bool
		if from, ok = storage.ParsePageToken(t); !ok {
			return nil, spec.InvalidParam("invalid pagination token")
		}
	}
	var to *storage.PagePos
	if t := q.Get("to"); t != "" {
		p, ok := storage.ParsePageToken(t)
		if !ok {
			return nil, spec.InvalidParam("invalid pagination token")
		}
		to = &p
	}
	kept, end, err := s.readMessages(ctx, room.NID, from, to, backwards, limit, filter)
	if err != nil {
		return nil, err
	}
	chunk, err := s.rooms.ClientEvents(ctx, room.RoomID, kept, s.viewer(r))
	if err != nil {
		return nil, err
	}
	if chunk == nil {
		chunk = []roomserver.ClientEvent{}
	}
	resp := map[string]any{"chunk": chunk, "start": from.Token()}
	if end != nil {
		resp["end"] = end.Token()
	}
	return resp, nil
}

// readMessages returns up to limit events from pos that pass the filter, and where the next
// page starts (nil at the end of the history).
func (s *Server) readMessages(ctx context.Context, roomNID int64, pos storage.PagePos, to *storage.PagePos, backwards bool, limit int, filter eventFilter) ([]*storage.Event, *storage.PagePos, error) {
	var kept []*storage.Event
	for scanned := 0; scanned < maxMessagesScan; {
		evs, err := s.db.RoomEventsPage(ctx, roomNID, pos, to, backwards, limit)
		if err != nil {
			return nil, nil, err
		}
		scanned += len(evs)
		for i, ev := range evs {
			if filter.allows(ev) {
				kept = append(kept, ev)
			}
			pos = pos.Passed(ev, backwards)
			if len(kept) == limit && (i < len(evs)-1 || len(evs) == limit) {
				return kept, &pos, nil
			}
		}
		if len(evs) < limit {
			return kept, nil, nil
		}
	}
	return kept, &pos, nil
}

// handleRoomContext handles GET /v1/rooms/{room_id}/context/{event_id}: the client API's
// /context without its visibility checks.
func (s *Server) handleRoomContext(r *http.Request) (any, error) {
	ctx := r.Context()
	room, err := s.pathRoom(r)
	if err != nil {
		return nil, err
	}
	limit, err := eventLimit(r, 10)
	if err != nil {
		return nil, err
	}
	filter, err := parseEventFilter(r)
	if err != nil {
		return nil, err
	}
	ev, err := s.db.Event(ctx, httputil.PathVar(r, "event_id"))
	if err != nil || ev.RoomNID != room.NID || !ev.Visible() {
		return nil, spec.NotFound("event not found")
	}
	at := storage.At(ev)
	nBefore := limit / 2
	before, after := []*storage.Event{}, []*storage.Event{}
	if nBefore > 0 {
		if before, err = s.db.RoomEventsTopo(ctx, room.NID, at, nil, true, nBefore); err != nil {
			return nil, err
		}
	}
	if limit-nBefore > 0 {
		if after, err = s.db.RoomEventsTopo(ctx, room.NID, storage.After(at), nil, false, limit-nBefore); err != nil {
			return nil, err
		}
	}
	start, end := at, storage.After(at)
	if len(before) > 0 {
		start = storage.At(before[len(before)-1])
	}
	if len(after) > 0 {
		end = storage.After(storage.At(after[len(after)-1]))
	}
	viewer := s.viewer(r)
	format := func(evs []*storage.Event) ([]roomserver.ClientEvent, error) {
		var kept []*storage.Event
		for _, e := range evs {
			if filter.allows(e) {
				kept = append(kept, e)
			}
		}
		out, err := s.rooms.ClientEvents(ctx, room.RoomID, kept, viewer)
		if out == nil {
			out = []roomserver.ClientEvent{}
		}
		return out, err
	}
	beforeEvs, err := format(before)
	if err != nil {
		return nil, err
	}
	afterEvs, err := format(after)
	if err != nil {
		return nil, err
	}
	target, err := s.rooms.ClientEvent(ctx, room.RoomID, ev, viewer)
	if err != nil {
		return nil, err
	}
	stateEvs, err := s.db.CurrentStateEvents(ctx, room.NID, "")
	if err != nil {
		return nil, err
	}
	state, err := s.rooms.StateClientEvents(ctx, room.RoomID, stateEvs, viewer)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"event": target, "events_before": beforeEvs, "events_after": afterEvs,
		"start": storage.Plain(start).Token(), "end": storage.Plain(end).Token(), "state": state,
	}, nil
}

// handleRoomTimestampToEvent handles GET /v1/rooms/{room_id}/timestamp_to_event?ts=&dir=:
// the event of this server's history of the room nearest to ts in the direction dir
// (default f).
func (s *Server) handleRoomTimestampToEvent(r *http.Request) (any, error) {
	room, err := s.pathRoom(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	if q.Get("ts") == "" {
		return nil, httputil.Errorf(http.StatusBadRequest, "M_MISSING_PARAM", "ts is required")
	}
	if q.Get("dir") == "" {
		q.Set("dir", "f")
		r.URL.RawQuery = q.Encode()
	}
	ts, forwards, err := httputil.TimestampQuery(r)
	if err != nil {
		return nil, err
	}
	evs, err := s.db.EventsNearTime(r.Context(), room.NID, ts, forwards, 1)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, spec.NotFound("no event found in that direction")
	}
	return roomserver.EventNearTime{EventID: evs[0].EventID, OriginTS: evs[0].OriginTS}, nil
}

// handleForwardExtremities handles GET /v1/rooms/{room_id_or_alias}/forward_extremities.
func (s *Server) handleForwardExtremities(r *http.Request) (any, error) {
	room, err := s.pathRoomOrAlias(r)
	if err != nil {
		return nil, err
	}
	xs, err := s.db.ForwardExtremityInfo(r.Context(), room.NID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"count": len(xs), "results": xs}, nil
}

// handleDeleteForwardExtremities handles DELETE /v1/rooms/{room_id_or_alias}/forward_extremities:
// all but the deepest extremity are dropped (roomserver.DeleteForwardExtremities).
func (s *Server) handleDeleteForwardExtremities(r *http.Request) (any, error) {
	room, err := s.pathRoomOrAlias(r)
	if err != nil {
		return nil, err
	}
	n, err := s.rooms.DeleteForwardExtremities(r.Context(), room.RoomID)
	if err != nil {
		return nil, err
	}
	s.audit(r, "delete_forward_extremities", "room_id", room.RoomID, "deleted", n)
	return map[string]any{"deleted": n}, nil
}

package federationapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Reading room events: the endpoints other servers use to fill gaps in their copy of a room's
// DAG. The roomserver decides what the asking server may see (roomserver/fedquery.go); events
// are served as stored, the signed PDU.

// maxBackfill bounds the events of one /backfill or /get_missing_events answer.
const maxBackfill = 100

// pduTransaction is the spec's single and unlimited PDU transactions (/event, /backfill).
type pduTransaction struct {
	Origin         spec.ServerName   `json:"origin"`
	OriginServerTS spec.Timestamp    `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
}

func (s *Server) transaction(pdus []json.RawMessage) pduTransaction {
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	return pduTransaction{Origin: s.cfg.ServerName, OriginServerTS: spec.AsTimestamp(s.cfg.Now()), PDUs: pdus}
}

// handleGetEvent handles GET /_matrix/federation/v1/event/{eventId}.
func (s *Server) handleGetEvent(r *http.Request) (any, error) {
	ctx := r.Context()
	ev, err := s.rs.EventForServer(ctx, request(ctx).Origin(), "", httputil.PathVar(r, "eventId"))
	if err != nil {
		return nil, err
	}
	return s.transaction([]json.RawMessage{ev.JSON}), nil
}

// handleState handles GET /_matrix/federation/v1/state/{roomId}?event_id=: the state before
// the event and its auth chain, as full PDUs.
func (s *Server) handleState(r *http.Request) (any, error) {
	state, chain, err := s.stateAt(r)
	if err != nil {
		return nil, err
	}
	return map[string]any{"pdus": eventJSONs(state), "auth_chain": eventJSONs(chain)}, nil
}

// handleStateIDs handles GET /_matrix/federation/v1/state_ids/{roomId}?event_id=: as /state,
// with event IDs.
func (s *Server) handleStateIDs(r *http.Request) (any, error) {
	state, chain, err := s.stateAt(r)
	if err != nil {
		return nil, err
	}
	return map[string]any{"pdu_ids": eventIDs(state), "auth_chain_ids": eventIDs(chain)}, nil
}

// stateAt answers /state and /state_ids: the room state before event_id, "prior to
// considering any state changes induced by the requested event", and the auth chain of
// that state.
func (s *Server) stateAt(r *http.Request) (state, authChain []*storage.Event, err error) {
	ctx := r.Context()
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, nil, err
	}
	eventID := r.URL.Query().Get("event_id")
	if eventID == "" {
		return nil, nil, spec.MissingParam("event_id is required")
	}
	if _, err := s.rs.EventForServer(ctx, request(ctx).Origin(), roomID, eventID); err != nil {
		return nil, nil, err
	}
	if state, err = s.rs.StateBeforeEvent(ctx, roomID, eventID); err != nil {
		return nil, nil, err
	}
	if authChain, err = s.rs.AuthChain(ctx, roomID, eventIDs(state)); err != nil {
		return nil, nil, err
	}
	return state, authChain, nil
}

// handleEventAuth handles GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}.
func (s *Server) handleEventAuth(r *http.Request) (any, error) {
	ctx := r.Context()
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	ev, err := s.rs.EventForServer(ctx, request(ctx).Origin(), roomID, httputil.PathVar(r, "eventId"))
	if err != nil {
		return nil, err
	}
	chain, err := s.rs.AuthChain(ctx, roomID, []string{ev.EventID})
	if err != nil {
		return nil, err
	}
	return map[string]any{"auth_chain": eventJSONs(chain)}, nil
}

// handleBackfill handles GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=.
func (s *Server) handleBackfill(r *http.Request) (any, error) {
	ctx := r.Context()
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	from := q["v"]
	if len(from) == 0 {
		return nil, spec.MissingParam("v is required")
	}
	if q.Get("limit") == "" {
		return nil, spec.MissingParam("limit is required")
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 0 {
		return nil, spec.InvalidParam("limit must be a non-negative integer")
	}
	evs, err := s.rs.BackfillEvents(ctx, roomID, from, min(limit, maxBackfill))
	if err != nil {
		return nil, err
	}
	pdus, err := s.rs.EventsForServer(ctx, request(ctx).Origin(), roomID, evs)
	if err != nil {
		return nil, err
	}
	return s.transaction(pdus), nil
}

// handleGetMissingEvents handles POST /_matrix/federation/v1/get_missing_events/{roomId}.
func (s *Server) handleGetMissingEvents(r *http.Request) (any, error) {
	ctx := r.Context()
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	body := struct {
		Limit    *int     `json:"limit"`
		MinDepth int64    `json:"min_depth"`
		Earliest []string `json:"earliest_events"`
		Latest   []string `json:"latest_events"`
	}{}
	if err := httputil.UnmarshalObject(request(ctx).Content(), &body); err != nil {
		return nil, err
	}
	if body.Earliest == nil || body.Latest == nil {
		return nil, spec.MissingParam("earliest_events and latest_events are required")
	}
	limit := 10
	if body.Limit != nil {
		limit = min(max(*body.Limit, 0), maxBackfill)
	}
	evs, err := s.rs.MissingEvents(ctx, roomID, body.Earliest, body.Latest, limit, body.MinDepth)
	if err != nil {
		return nil, err
	}
	pdus, err := s.rs.EventsForServer(ctx, request(ctx).Origin(), roomID, evs)
	if err != nil {
		return nil, err
	}
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	return map[string]any{"events": pdus}, nil
}

// eventJSONs returns the stored PDUs of evs.
func eventJSONs(evs []*storage.Event) []json.RawMessage {
	out := make([]json.RawMessage, len(evs))
	for i, ev := range evs {
		out[i] = ev.JSON
	}
	return out
}

// eventIDs returns the IDs of evs.
func eventIDs(evs []*storage.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.EventID
	}
	return out
}

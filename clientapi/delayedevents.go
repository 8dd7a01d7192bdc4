package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/delayedevents"
	"github.com/lattice-chat/lattice/internal/httputil"
)

// delayParam is the query parameter of PUT /send and PUT /state that makes the event a
// delayed event (MSC4140's unstable form, which matrix-js-sdk and Element Call use).
const delayParam = "org.matrix.msc4140.delay"

// SetDelayedEvents gives the client API the delayed events service (MSC4140).
func (s *Server) SetDelayedEvents(d *delayedevents.Service) { s.delayed = d }

// delayedRoutes are MSC4140's endpoints, under its unstable prefix. The management actions
// need no access token: the delay ID is the authorisation.
func (s *Server) delayedRoutes() []route {
	const get, post, put = http.MethodGet, http.MethodPost, http.MethodPut
	const prefix = "/unstable/org.matrix.msc4140"
	return []route{
		{put, prefix + "/rooms/{roomId}/delayed_event/{eventType}/{txnId}", true, true, s.handlePutDelayedEvent},
		{get, prefix + "/delayed_events", true, true, s.handleDelayedEvents},
		{get, prefix + "/delayed_events/{delayId}", true, true, s.handleDelayedEvent},
		{post, prefix + "/delayed_events/{delayId}", false, true, s.handleDelayedEventActionBody},
		{post, prefix + "/delayed_events/{delayId}/{action}", false, true, s.handleDelayedEventAction},
	}
}

// delayOf returns the delay query parameter of r in milliseconds, and whether it is there.
func delayOf(r *http.Request) (int64, bool, error) {
	v, ok := r.URL.Query()[delayParam]
	if !ok {
		return 0, false, nil
	}
	ms, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || ms <= 0 {
		return 0, true, spec.InvalidParam(delayParam + " must be a positive number of milliseconds")
	}
	return ms, true, nil
}

// scheduleDelayed schedules an event of the request's device and answers {delay_id}; the
// request's {txnId}, when it has one, makes a retry answer the same delay_id.
func (s *Server) scheduleDelayed(r *http.Request, roomID, evType string, stateKey *string, content json.RawMessage, delayMS int64) (any, error) {
	if s.delayed == nil {
		return nil, spec.Unrecognized("delayed events are not available")
	}
	if shadowBanned(r) {
		// As for their other sends: an answer that looks right, and nothing scheduled.
		return map[string]string{"delay_id": fakeID("", sender(r).UserID, sender(r).DeviceID, r.URL.Path, string(content))}, nil
	}
	sticky, isSticky, err := stickyOf(r)
	if err != nil {
		return nil, err
	}
	var id string
	if isSticky && stateKey == nil {
		// A sticky delayed event (MSC4354 adds the parameter to both scheduling endpoints);
		// for a state event it is ignored, as PUT /state ignores it.
		id, err = s.delayed.ScheduleSticky(r.Context(), sender(r), roomID, evType, content, delayMS, httputil.PathVar(r, "txnId"), sticky)
	} else {
		id, err = s.delayed.Schedule(r.Context(), sender(r), roomID, evType, stateKey, content, delayMS, httputil.PathVar(r, "txnId"))
	}
	if err != nil {
		return nil, delayedError(err)
	}
	return map[string]string{"delay_id": id}, nil
}

// delayedError turns the service's errors with their own status into the client API's.
func delayedError(err error) error {
	var de *delayedevents.Error
	if errors.As(err, &de) {
		return &httputil.Error{Status: de.Status, Code: de.Code, Msg: de.Msg, Extra: de.Extra}
	}
	return err
}

// handlePutDelayedEvent handles PUT /unstable/org.matrix.msc4140/rooms/{roomId}/
// delayed_event/{eventType}/{txnId}, the newest form of MSC4140's scheduling: the body is
// {delay, state_key (state events only), content}.
func (s *Server) handlePutDelayedEvent(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	var body struct {
		Delay    *int64          `json:"delay"`
		StateKey *string         `json:"state_key"`
		Content  json.RawMessage `json:"content"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Delay == nil {
		return nil, spec.MissingParam("delay is required")
	}
	var obj map[string]json.RawMessage
	if len(body.Content) == 0 || json.Unmarshal(body.Content, &obj) != nil || obj == nil {
		return nil, spec.BadJSON("content must be a JSON object")
	}
	if err := notSuspended(r); err != nil {
		return nil, err
	}
	return s.scheduleDelayed(r, roomID, httputil.PathVar(r, "eventType"), body.StateKey, body.Content, *body.Delay)
}

// handleDelayedEvents handles GET /unstable/org.matrix.msc4140/delayed_events: the user's
// scheduled and finalised delayed events, filtered, ordered and paged as the query asks.
func (s *Server) handleDelayedEvents(r *http.Request) (any, error) {
	if s.delayed == nil {
		return nil, spec.Unrecognized("delayed events are not available")
	}
	return s.delayed.List(r.Context(), httputil.Device(r.Context()).UserID, r.URL.Query())
}

// handleDelayedEvent handles GET /unstable/org.matrix.msc4140/delayed_events/{delayId}.
func (s *Server) handleDelayedEvent(r *http.Request) (any, error) {
	if s.delayed == nil {
		return nil, spec.Unrecognized("delayed events are not available")
	}
	return s.delayed.Get(r.Context(), httputil.Device(r.Context()).UserID, httputil.PathVar(r, "delayId"))
}

// handleDelayedEventAction handles POST /unstable/org.matrix.msc4140/delayed_events/
// {delayId}/{action}: cancel, restart or send.
func (s *Server) handleDelayedEventAction(r *http.Request) (any, error) {
	return s.actOnDelayed(r, httputil.PathVar(r, "action"))
}

// handleDelayedEventActionBody handles POST /unstable/org.matrix.msc4140/delayed_events/
// {delayId} with {"action": ...}, the earlier form of the actions, which matrix-js-sdk uses.
func (s *Server) handleDelayedEventActionBody(r *http.Request) (any, error) {
	var body struct {
		Action *string `json:"action"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Action == nil {
		return nil, spec.MissingParam("action is required")
	}
	return s.actOnDelayed(r, *body.Action)
}

func (s *Server) actOnDelayed(r *http.Request, action string) (any, error) {
	if s.delayed == nil {
		return nil, spec.Unrecognized("delayed events are not available")
	}
	// The delay ID is the only key to these endpoints: an address that keeps naming unknown
	// ones is slowed down, those that know theirs are not.
	if blocked, wait := s.unknownDelays.Blocked(clientIP(r)); blocked {
		return nil, spec.LimitExceeded("too many unknown delay IDs from this address", wait.Milliseconds())
	}
	if err := s.delayed.Act(r.Context(), httputil.PathVar(r, "delayId"), action); err != nil {
		var me spec.MatrixError
		if errors.As(err, &me) && me.ErrCode == spec.ErrorNotFound {
			s.unknownDelays.Allow(clientIP(r))
		}
		return nil, delayedError(err)
	}
	return struct{}{}, nil
}

package delayedevents

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/url"
	"slices"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// Management actions of MSC4140.
const (
	ActionCancel  = "cancel"
	ActionRestart = "restart"
	ActionSend    = "send"
)

// Act applies a management action to the delayed event delayID. Knowing the delay ID is
// the authorisation (MSC4140 lets a client hand it to a service such as an SFU). An action
// repeated after it succeeded succeeds again; one that conflicts with how the delayed event
// was finalised is 409.
func (s *Service) Act(ctx context.Context, delayID, action string) error {
	var err error
	switch action {
	case ActionCancel:
		if err = s.db.CancelDelayedEvent(ctx, delayID, s.now().UnixMilli()); err == nil {
			s.forget(delayID)
		}
	case ActionRestart:
		var sendTS int64
		if sendTS, err = s.db.RestartDelayedEvent(ctx, delayID, s.now().UnixMilli()); err == nil {
			s.push(delayID, sendTS)
		}
	case ActionSend:
		var d *storage.DelayedEvent
		if d, err = s.db.ClaimDelayedEvent(ctx, delayID, math.MaxInt64); err == nil {
			return s.send(ctx, d, "action")
		}
	default:
		return spec.InvalidParam("action must be cancel, restart or send")
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return s.finalisedOutcome(ctx, delayID, action)
}

// finalisedOutcome answers an action on a delayed event that is not scheduled: not found,
// already done as asked (success), or finalised otherwise (409).
func (s *Service) finalisedOutcome(ctx context.Context, delayID, action string) error {
	d, err := s.db.DelayedEvent(ctx, delayID)
	if errors.Is(err, storage.ErrNotFound) {
		return spec.NotFound("no delayed event has this ID")
	} else if err != nil {
		return err
	}
	switch {
	case action == ActionSend && d.Status == storage.DelayedSent,
		action == ActionCancel && (d.Status == storage.DelayedCancelled || d.Status == storage.DelayedError):
		return nil
	case d.Status == storage.DelayedSending:
		return &Error{Status: 409, Code: "M_UNKNOWN", Msg: "the delayed event is being sent"}
	}
	return &Error{Status: 409, Code: "M_UNKNOWN", Msg: "the delayed event was already " + outcomeWord(d.Status)}
}

func outcomeWord(status string) string {
	if status == storage.DelayedSent {
		return "sent"
	}
	return "cancelled"
}

// pageSize is how many delayed events a page of the list holds.
const pageSize = 50

// List returns a page of userID's delayed events as MSC4140's GET /delayed_events with
// the query q: the filters status, room_id, type, outcome and reason, order_by (send_ts,
// origin_server_ts or running_since) and dir (f or b); from is the next_batch (prev_batch
// with dir=b) of the previous page. since_ts is not supported: a request with it is refused.
func (s *Service) List(ctx context.Context, userID string, q url.Values) (map[string]any, error) {
	f := storage.DelayedFilter{Status: q.Get("status"), RoomID: q.Get("room_id"), Type: q.Get("type"),
		Outcome: q.Get("outcome"), Reason: q.Get("reason"), OrderBy: q.Get("order_by"), Backward: q.Get("dir") == "b"}
	for name, ok := range map[string]bool{
		"status":   slices.Contains([]string{"", "scheduled", "finalised"}, f.Status),
		"outcome":  slices.Contains([]string{"", "send", "cancel", "error"}, f.Outcome),
		"reason":   slices.Contains([]string{"", "action", "delay"}, f.Reason),
		"order_by": slices.Contains([]string{"", "send_ts", "origin_server_ts", "running_since"}, f.OrderBy),
		"dir":      slices.Contains([]string{"", "f", "b"}, q.Get("dir")),
		"since_ts": !q.Has("since_ts"),
	} {
		if !ok {
			return nil, spec.InvalidParam(name + " has a value this server does not support")
		}
	}
	offset := 0
	if from := q.Get("from"); from != "" {
		n, err := strconv.Atoi(from)
		if err != nil || n < 0 {
			return nil, spec.InvalidParam("from is not a token of this list")
		}
		offset = n
	}
	ds, err := s.db.DelayedEventsOfUser(ctx, userID, f, offset, pageSize+1)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	if len(ds) > pageSize {
		ds = ds[:pageSize]
		// MSC4140: next_batch is absent when paging backwards, where the token to the
		// following page (in the dir=b order) is prev_batch.
		key := "next_batch"
		if f.Backward {
			key = "prev_batch"
		}
		out[key] = strconv.Itoa(offset + pageSize)
	}
	list := make([]map[string]any, 0, len(ds))
	for _, d := range ds {
		list = append(list, describe(d))
	}
	out["delayed_events"] = list
	return out, nil
}

// Get returns one of userID's delayed events.
func (s *Service) Get(ctx context.Context, userID, delayID string) (map[string]any, error) {
	d, err := s.db.DelayedEvent(ctx, delayID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && d.UserID != userID) {
		return nil, spec.NotFound("no delayed event of yours has this ID")
	} else if err != nil {
		return nil, err
	}
	return describe(d), nil
}

// describe is a delayed event as MSC4140's GET endpoints give it. Finalised ones also have
// outcome (send, cancel) and reason (action, delay, error), as earlier versions of the MSC
// gave them.
func describe(d *storage.DelayedEvent) map[string]any {
	m := map[string]any{
		"delay_id": d.DelayID, "room_id": d.RoomID, "type": d.Type, "delay": d.DelayMS,
		"running_since": d.RunningSince, "content": json.RawMessage(d.Content),
	}
	if d.StateKey != nil {
		m["state_key"] = *d.StateKey
	}
	if !d.Finalised() {
		return m
	}
	m["origin_server_ts"] = d.FinalisedTS
	switch d.Status {
	case storage.DelayedSent:
		m["event_id"] = d.EventID
		m["outcome"] = "send"
		m["reason"] = d.Reason
	case storage.DelayedCancelled:
		m["outcome"] = "cancel"
		m["reason"] = d.Reason
	case storage.DelayedError:
		m["outcome"] = "cancel"
		m["reason"] = "error"
	}
	if len(d.Error) > 0 {
		m["error"] = d.Error
		m["reason"] = "error"
	}
	return m
}

package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Thread subscriptions (MSC4306), under the MSC's unstable prefix: PUT subscribes (manually,
// or automatically for a cause event), DELETE unsubscribes, GET reads. Changes reach clients
// through sliding sync's thread subscriptions extension (MSC4308, syncapi/threadsubs.go).
const threadSubPath = "/unstable/io.element.msc4306/rooms/{roomId}/thread/{eventId}/subscription"

func (s *Server) threadSubscriptionRoutes() []route {
	return []route{
		{http.MethodGet, threadSubPath, true, true, s.handleGetThreadSubscription},
		{http.MethodPut, threadSubPath, true, true, s.handleSubscribeThread},
		{http.MethodDelete, threadSubPath, true, true, s.handleUnsubscribeThread},
	}
}

// threadTarget checks that the thread root exists in the room and that the requester is in
// the room; otherwise the thread is "not found" for them (MSC4306: 404 M_NOT_FOUND).
func (s *Server) threadTarget(r *http.Request) (userID, roomID, root string, roomNID int64, err error) {
	userID = httputil.Device(r.Context()).UserID
	roomID, root = httputil.PathVar(r, "roomId"), httputil.PathVar(r, "eventId")
	notFound := spec.NotFound("unknown thread")
	room, err := s.db.Room(r.Context(), roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", "", "", 0, notFound
	} else if err != nil {
		return "", "", "", 0, err
	}
	if m, err := s.db.Membership(r.Context(), room.NID, userID); err != nil || m != spec.Join {
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return "", "", "", 0, err
		}
		return "", "", "", 0, notFound
	}
	ev, err := s.db.Event(r.Context(), root)
	if errors.Is(err, storage.ErrNotFound) || err == nil && (ev.RoomNID != room.NID || ev.Hidden) {
		return "", "", "", 0, notFound
	} else if err != nil {
		return "", "", "", 0, err
	}
	return userID, roomID, root, room.NID, nil
}

// handleGetThreadSubscription answers {"automatic": bool} for a subscribed thread, else 404.
func (s *Server) handleGetThreadSubscription(r *http.Request) (any, error) {
	userID, roomID, root, _, err := s.threadTarget(r)
	if err != nil {
		return nil, err
	}
	sub, err := s.db.ThreadSubscription(r.Context(), userID, roomID, root)
	if errors.Is(err, storage.ErrNotFound) || err == nil && !sub.Subscribed {
		return nil, spec.NotFound("not subscribed to this thread")
	} else if err != nil {
		return nil, err
	}
	return map[string]bool{"automatic": sub.Automatic}, nil
}

// handleSubscribeThread subscribes. A manual subscription (no "automatic") always applies and
// outranks an automatic one. An automatic one names its cause event, which must be in the
// thread (400 M_NOT_IN_THREAD); it changes nothing when already subscribed, and is refused with
// 409 M_CONFLICTING_UNSUBSCRIPTION when the user unsubscribed after the cause event was
// received (so a dormant device cannot subscribe the user again). The older boolean form
// ("automatic": true) subscribes automatically without a cause, unless the user ever
// unsubscribed from the thread (409 as well).
func (s *Server) handleSubscribeThread(r *http.Request) (any, error) {
	userID, roomID, root, roomNID, err := s.threadTarget(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Automatic json.RawMessage `json:"automatic"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	var cause string
	automatic := false
	switch v := gjson.ParseBytes(body.Automatic); {
	case len(body.Automatic) == 0 || v.Type == gjson.Null || v.Type == gjson.False:
	case v.Type == gjson.True:
		automatic = true
	case v.Type == gjson.String:
		automatic, cause = true, v.String()
	default:
		return nil, spec.BadJSON("automatic must be an event ID")
	}
	var causeNID int64
	if cause != "" {
		ev, err := s.db.Event(r.Context(), cause)
		if errors.Is(err, storage.ErrNotFound) || err == nil && (ev.RoomNID != roomNID || !inThread(ev, root)) {
			return nil, httputil.Errorf(http.StatusBadRequest, "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD", "the cause event is not in the thread")
		} else if err != nil {
			return nil, err
		}
		causeNID = ev.NID
	}
	return struct{}{}, s.changeThreadSubscription(r, userID, roomID, root, func(old storage.ThreadSubscription) (*storage.ThreadSubscription, error) {
		if automatic {
			// The boolean form names no cause to order against the unsubscription: once the
			// user has unsubscribed it is refused, so that clients cannot keep retriggering it.
			if !old.Subscribed && old.UnsubscribedAt != 0 && (causeNID == 0 || old.UnsubscribedAt >= causeNID) {
				return nil, httputil.Errorf(http.StatusConflict, "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION",
					"the thread was unsubscribed from after the cause event")
			}
			if old.Subscribed {
				return nil, nil // manual outranks automatic; automatic stays automatic
			}
		} else if old.Subscribed && !old.Automatic {
			return nil, nil
		}
		old.Subscribed, old.Automatic = true, automatic
		return &old, nil
	})
}

// handleUnsubscribeThread unsubscribes; unsubscribing from a thread one is not subscribed to
// succeeds and changes nothing.
func (s *Server) handleUnsubscribeThread(r *http.Request) (any, error) {
	userID, roomID, root, _, err := s.threadTarget(r)
	if err != nil {
		return nil, err
	}
	// The newest event received so far: automatic subscriptions for events up to it are
	// skipped from now on.
	newest, err := s.db.MaxEventNID(r.Context())
	if err != nil {
		return nil, err
	}
	return struct{}{}, s.changeThreadSubscription(r, userID, roomID, root, func(old storage.ThreadSubscription) (*storage.ThreadSubscription, error) {
		if !old.Subscribed {
			return nil, nil
		}
		old.Subscribed, old.Automatic, old.UnsubscribedAt = false, false, newest
		return &old, nil
	})
}

// changeThreadSubscription reads the user's subscription to the thread, lets change decide
// the new one (nil: no change) and stores it, in one write transaction, so that the requests
// of several devices at once (a mention reaches them all) apply one after the other.
func (s *Server) changeThreadSubscription(r *http.Request, userID, roomID, root string, change func(storage.ThreadSubscription) (*storage.ThreadSubscription, error)) error {
	var pos int64
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		old, err := tx.ThreadSubscription(r.Context(), userID, roomID, root)
		if errors.Is(err, storage.ErrNotFound) {
			old = &storage.ThreadSubscription{RoomID: roomID, ThreadRoot: root}
		} else if err != nil {
			return err
		}
		next, err := change(*old)
		if err != nil || next == nil {
			return err
		}
		pos, err = tx.SetThreadSubscription(r.Context(), userID, *next)
		return err
	})
	if err == nil && pos != 0 && s.waker != nil {
		s.waker.Wake(storage.StreamAccountData, pos, []string{userID})
	}
	return err
}

// inThread reports whether ev is the thread's root or an event of the thread.
func inThread(ev *storage.Event, root string) bool {
	if ev.EventID == root {
		return true
	}
	rel := gjson.GetBytes(ev.JSON, `content.m\.relates_to`)
	return rel.Get("rel_type").String() == "m.thread" && rel.Get("event_id").String() == root
}

package clientapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
)

// notificationJSON is one entry of GET /notifications.
type notificationJSON struct {
	Actions    json.RawMessage        `json:"actions"`
	Event      roomserver.ClientEvent `json:"event"`
	ProfileTag string                 `json:"profile_tag,omitempty"`
	Read       bool                   `json:"read"`
	RoomID     string                 `json:"room_id"`
	TS         int64                  `json:"ts"`
}

// Page sizes of GET /notifications.
const (
	defaultNotificationsLimit = 20
	maxNotificationsLimit     = 100
)

// handleNotifications handles GET /notifications: the requester's notifications newest first,
// each read when it is at or before their read receipt. from is the next_token of the
// previous page (an event NID); only=highlight keeps the highlighted ones.
func (s *Server) handleNotifications(r *http.Request) (any, error) {
	ctx, dev := r.Context(), httputil.Device(r.Context())
	q := r.URL.Query()
	var from int64
	if v := q.Get("from"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return nil, spec.InvalidParam("from is not a token this server gave")
		}
		from = n
	}
	limit := defaultNotificationsLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, spec.InvalidParam("limit must be a non-negative integer")
		}
		limit = min(n, maxNotificationsLimit)
	}
	notes, err := s.db.Notifications(ctx, dev.UserID, from, limit, q.Get("only") == "highlight")
	if err != nil {
		return nil, err
	}
	nids := make([]int64, len(notes))
	roomOf := make(map[int64]string, len(notes))
	for i, n := range notes {
		nids[i], roomOf[n.EventNID] = n.EventNID, n.RoomID
	}
	evs, err := s.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	viewer := roomserver.Viewer{UserID: dev.UserID, DeviceID: dev.DeviceID}
	formatted := make(map[int64]roomserver.ClientEvent, len(evs))
	for _, ev := range evs {
		// One event at a time: the events of a page may be in different rooms.
		ce, err := s.rooms.ClientEvent(ctx, roomOf[ev.NID], ev, viewer)
		if err != nil {
			return nil, err
		}
		formatted[ev.NID] = ce
	}
	out := make([]notificationJSON, 0, len(notes))
	for _, n := range notes {
		ce, ok := formatted[n.EventNID]
		if !ok {
			continue // the event is gone (purged)
		}
		out = append(out, notificationJSON{Actions: json.RawMessage(n.Actions), Event: ce, Read: n.Read, RoomID: n.RoomID, TS: n.TS})
	}
	resp := map[string]any{"notifications": out}
	if len(notes) == limit && limit > 0 {
		resp["next_token"] = strconv.FormatInt(notes[len(notes)-1].EventNID, 10)
	}
	return resp, nil
}

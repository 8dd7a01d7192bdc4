package syncapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// handleCreateFilter handles POST /user/{userId}/filter. The filter is checked against the
// spec's schema (filter.yaml: "400: The filter was invalid"), so that a client learns of a
// mistake when it uploads the filter rather than from a /sync that ignores it.
func (s *Server) handleCreateFilter(r *http.Request) (any, error) {
	userID, err := filterOwner(r)
	if err != nil {
		return nil, err
	}
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	if _, err := parseFilter(body); err != nil {
		return nil, err
	}
	var id int64
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		id, err = tx.InsertFilter(r.Context(), userID, string(body))
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"filter_id": strconv.FormatInt(id, 10)}, nil
}

// handleGetFilter handles GET /user/{userId}/filter/{filterId}.
func (s *Server) handleGetFilter(r *http.Request) (any, error) {
	userID, err := filterOwner(r)
	if err != nil {
		return nil, err
	}
	id, err := strconv.ParseInt(httputil.PathVar(r, "filterId"), 10, 64)
	if err != nil {
		return nil, spec.NotFound("unknown filter")
	}
	f, err := s.db.Filter(r.Context(), userID, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("unknown filter")
	} else if err != nil {
		return nil, err
	}
	return json.RawMessage(f), nil
}

// filterOwner returns the path's user, who must be the requester.
func filterOwner(r *http.Request) (string, error) {
	dev := httputil.Device(r.Context())
	if httputil.PathVar(r, "userId") != dev.UserID {
		return "", spec.Forbidden("you can only access your own filters")
	}
	return dev.UserID, nil
}

// parseFilter decodes a filter and checks it.
func parseFilter(raw []byte) (Filter, error) {
	var f Filter
	if err := httputil.UnmarshalObject(raw, &f); err != nil {
		return f, err
	}
	return f, f.validate()
}

// validate checks what the field types alone do not: event_format is "client" or
// "federation", limits are not negative, and the room and sender lists hold room and user IDs
// (event_filter.yaml, room_event_filter.yaml).
func (f Filter) validate() error {
	if f.EventFormat != "" && f.EventFormat != "client" && f.EventFormat != "federation" {
		return spec.BadJSON(`event_format must be "client" or "federation"`)
	}
	if err := validRoomIDs("room.rooms", deref(f.Room.Rooms), f.Room.NotRooms); err != nil {
		return err
	}
	for name, ef := range map[string]EventFilter{"account_data": f.AccountData, "presence": f.Presence} {
		if err := ef.validate(name); err != nil {
			return err
		}
	}
	for name, rf := range map[string]RoomEventFilter{"room.timeline": f.Room.Timeline, "room.state": f.Room.State,
		"room.ephemeral": f.Room.Ephemeral, "room.account_data": f.Room.AccountData} {
		if err := rf.validate(name); err != nil {
			return err
		}
	}
	return nil
}

func (f RoomEventFilter) validate(name string) error {
	if err := f.EventFilter.validate(name); err != nil {
		return err
	}
	return validRoomIDs(name+".rooms", deref(f.Rooms), f.NotRooms)
}

func (f EventFilter) validate(name string) error {
	if f.Limit != nil && *f.Limit < 0 {
		return spec.BadJSON(name + ".limit must not be negative")
	}
	for _, list := range [][]string{deref(f.Senders), f.NotSenders} {
		for _, u := range list {
			if _, err := spec.NewUserID(u, false); err != nil {
				return spec.BadJSON(name + ": " + strconv.Quote(u) + " is not a user ID")
			}
		}
	}
	return nil
}

func validRoomIDs(name string, lists ...[]string) error {
	for _, list := range lists {
		for _, id := range list {
			if len(id) < 2 || !strings.HasPrefix(id, "!") {
				return spec.BadJSON(name + ": " + strconv.Quote(id) + " is not a room ID")
			}
		}
	}
	return nil
}

func deref(p *[]string) []string {
	if p == nil {
		return nil
	}
	return *p
}

package syncapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

const searchPageSize = 10

// maxSearchPageSize bounds a page asked for with filter.limit.
const maxSearchPageSize = 100

type searchRequest struct {
	SearchCategories struct {
		RoomEvents *struct {
			SearchTerm   string          `json:"search_term"`
			Keys         []string        `json:"keys"`
			Filter       RoomEventFilter `json:"filter"`
			OrderBy      string          `json:"order_by"`
			EventContext *struct {
				BeforeLimit    *int `json:"before_limit"`
				AfterLimit     *int `json:"after_limit"`
				IncludeProfile bool `json:"include_profile"`
			} `json:"event_context"`
			IncludeState bool `json:"include_state"`
			Groupings    struct {
				GroupBy []struct {
					Key string `json:"key"`
				} `json:"group_by"`
			} `json:"groupings"`
		} `json:"room_events"`
	} `json:"search_categories"`
}

// handleSearch handles POST /search: full-text search of the rooms the user is or was in,
// returning only events their history visibility lets them see.
func (s *Server) handleSearch(r *http.Request) (any, error) {
	ctx := r.Context()
	dev := httputil.Device(ctx)
	var req searchRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	re := req.SearchCategories.RoomEvents
	if re == nil {
		return map[string]any{"search_categories": map[string]any{}}, nil
	}
	if strings.TrimSpace(re.SearchTerm) == "" {
		return nil, spec.MissingParam("search_term is required")
	}
	for _, k := range re.Keys {
		if k != "content.body" && k != "content.name" && k != "content.topic" {
			return nil, spec.InvalidParam("keys may only be content.body, content.name and content.topic")
		}
	}
	if re.OrderBy != "" && re.OrderBy != "rank" && re.OrderBy != "recent" {
		return nil, spec.InvalidParam("order_by must be rank or recent")
	}
	sq := storage.SearchQuery{Terms: re.SearchTerm, Keys: re.Keys, Recent: re.OrderBy == "recent", Limit: searchPageSize}
	if re.Filter.Limit != nil {
		// The filter's limit is the page size (search.yaml: "filter: ... limit"); next_batch
		// then pages on from it.
		sq.Limit = min(max(*re.Filter.Limit, 1), maxSearchPageSize)
	}
	if nb := r.URL.Query().Get("next_batch"); nb != "" {
		n, err := strconv.ParseInt(nb[min(1, len(nb)):], 10, 64)
		if err != nil || n < 0 || (nb[0] != 'o' && nb[0] != 'b') {
			return nil, spec.InvalidParam("invalid next_batch")
		}
		if nb[0] == 'o' {
			sq.Offset = int(n)
		} else {
			sq.Before = n
		}
	}
	memberships, err := s.db.UserMemberships(ctx, dev.UserID, "")
	if err != nil {
		return nil, err
	}
	roomIDs := map[int64]string{}
	for _, m := range memberships {
		if m.Membership == spec.Invite || m.Membership == spec.Knock || !allowsRoom(re.Filter.Rooms, re.Filter.NotRooms, m.RoomID) {
			continue
		}
		roomIDs[m.RoomNID] = m.RoomID
		sq.RoomNIDs = append(sq.RoomNIDs, m.RoomNID)
	}
	hits, count, err := s.db.Search(ctx, sq)
	if err != nil {
		return nil, err
	}
	viewer := s.viewer(ctx, dev)
	results := []map[string]any{}
	groups := map[string]map[string]any{}
	stateRooms := map[string]bool{}
	vises := map[string]*visibility{}
	for _, h := range hits {
		evs, err := s.db.EventsByNID(ctx, []int64{h.EventNID})
		if err != nil || len(evs) == 0 {
			continue
		}
		ev := evs[0]
		roomID := roomIDs[ev.RoomNID]
		vis := vises[roomID]
		if vis == nil {
			if vis, _, err = s.newVisibility(ctx, roomID, dev.UserID); err != nil {
				continue
			}
			vises[roomID] = vis
		}
		if ok, err := vis.canSee(ctx, ev); err != nil || !ok || viewer.Ignored[ev.Sender] || !re.Filter.allowsEvent(ev) {
			continue
		}
		ce, err := s.rooms.ClientEvent(ctx, roomID, ev, viewer)
		if err != nil {
			return nil, err
		}
		result := map[string]any{"rank": h.Rank, "result": ce}
		if re.EventContext != nil {
			if result["context"], err = s.searchContext(ctx, vis, ev, roomID, viewer, re.EventContext.BeforeLimit, re.EventContext.AfterLimit); err != nil {
				return nil, err
			}
		}
		results = append(results, result)
		stateRooms[roomID] = true
		g := groups[roomID]
		if g == nil {
			g = map[string]any{"results": []string{}, "order": len(groups) + 1}
			groups[roomID] = g
		}
		g["results"] = append(g["results"].([]string), ev.EventID)
	}
	out := map[string]any{"count": count, "highlights": searchWords(re.SearchTerm), "results": results}
	if len(hits) == sq.Limit {
		if sq.Recent {
			out["next_batch"] = fmt.Sprintf("b%d", hits[len(hits)-1].EventNID)
		} else {
			out["next_batch"] = fmt.Sprintf("o%d", sq.Offset+len(hits))
		}
	}
	for _, g := range re.Groupings.GroupBy {
		if g.Key == "room_id" {
			out["groups"] = map[string]any{"room_id": groups}
		}
	}
	if re.IncludeState {
		state := map[string]any{}
		for roomID := range stateRooms {
			evs, err := s.rooms.VisibleState(ctx, roomID, dev.UserID)
			if err != nil {
				continue
			}
			if state[roomID], err = s.rooms.StateClientEvents(ctx, roomID, evs, viewer); err != nil {
				return nil, err
			}
		}
		out["state"] = state
	}
	return map[string]any{"search_categories": map[string]any{"room_events": out}}, nil
}

// searchContext returns the events around a search result.
func (s *Server) searchContext(ctx context.Context, vis *visibility, ev *storage.Event, roomID string, viewer roomserver.Viewer, before, after *int) (map[string]any, error) {
	nb, na := 5, 5
	if before != nil {
		nb = min(max(*before, 0), 50)
	}
	if after != nil {
		na = min(max(*after, 0), 50)
	}
	at := storage.TopoPos{Depth: ev.Depth, NID: ev.NID}
	out := map[string]any{"events_before": []roomserver.ClientEvent{}, "events_after": []roomserver.ClientEvent{}, "start": topoToken(at), "end": topoToken(storage.After(at))}
	for _, part := range []struct {
		key       string
		n         int
		from      storage.TopoPos
		backwards bool
	}{{"events_before", nb, at, true}, {"events_after", na, storage.After(at), false}} {
		if part.n == 0 {
			continue
		}
		evs, err := s.db.RoomEventsTopo(ctx, ev.RoomNID, part.from, nil, part.backwards, part.n)
		if err != nil {
			return nil, err
		}
		if evs, err = vis.filter(ctx, dropIgnored(evs, viewer.Ignored)); err != nil {
			return nil, err
		}
		formatted, err := s.rooms.ClientEvents(ctx, roomID, evs, viewer)
		if err != nil {
			return nil, err
		}
		if formatted != nil {
			out[part.key] = formatted
		}
	}
	return out, nil
}

// searchWords are the words of the search term, which clients highlight.
func searchWords(term string) []string {
	return strings.FieldsFunc(strings.ToLower(term), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127)
	})
}

package syncapi

import (
	"context"
	"strconv"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// maxStickyEvents bounds the sticky section of one room. MSC4354 suggests 100 and lets later
// responses carry the rest, which needs a sticky stream position of its own; until then the
// bound only guards against abuse, as an hour of sticky events per room is normally small.
const maxStickyEvents = 1000

// Sliding sync's sticky events extension (MSC4480): the default and largest limit.
const (
	defaultStickyExtLimit = 100
	maxStickyExtLimit     = 1000
)

// stickySection returns the sticky section of a joined room (MSC4354, "Sync API changes",
// under its unstable name msc4354_sticky): the events in (from, to] that are still sticky,
// without those already in the timeline. from is 0 for an initial sync or a room the user
// just joined: every sticky event. nil when there are none.
func (s *Server) stickySection(ctx context.Context, req syncRequest, m storage.Membership, from, to int64, tl timeline) (*eventList, error) {
	if req.stickyRooms != nil && !req.stickyRooms[m.RoomNID] {
		return nil, nil // known to have none: no statement per room on an initial sync
	}
	now := time.Now().UnixMilli()
	sticky, err := s.db.StickyEvents(ctx, m.RoomNID, from, to, now, maxStickyEvents)
	if err != nil || len(sticky) == 0 {
		return nil, err
	}
	return s.stickyList(ctx, req.viewer, m.RoomID, sticky, tl.Events, now)
}

// stickyList formats a room's sticky events for a client, leaving out those in timeline and
// those of ignored users, each with the milliseconds it stays sticky in unsigned (the stored
// end, exact for events received from servers whose clocks run ahead). nil when none is left.
func (s *Server) stickyList(ctx context.Context, viewer roomserver.Viewer, roomID string, sticky []storage.StickyEvent, timeline []roomserver.ClientEvent, now int64) (*eventList, error) {
	inTimeline := make(map[string]bool, len(timeline))
	for _, ce := range timeline {
		inTimeline[ce.EventID] = true
	}
	expires := map[string]int64{}
	var evs []*storage.Event
	for _, se := range sticky {
		if !inTimeline[se.EventID] {
			evs = append(evs, se.Event)
			expires[se.EventID] = se.ExpiresTS
		}
	}
	evs = dropIgnored(evs, viewer.Ignored)
	if len(evs) == 0 {
		return nil, nil
	}
	ces, err := s.rooms.ClientEvents(ctx, roomID, evs, viewer)
	if err != nil {
		return nil, err
	}
	list := &eventList{Events: make([]any, 0, len(ces))}
	for _, ce := range ces {
		if ce.Unsigned == nil {
			ce.Unsigned = map[string]any{}
		}
		ce.Unsigned["msc4354_sticky_duration_ttl_ms"] = max(expires[ce.EventID]-now, 0)
		list.Events = append(list.Events, ce)
	}
	return list, nil
}

// stickyExtConfig is the sticky events extension's config (MSC4480, unstable name
// org.matrix.msc4354.sticky_events).
type stickyExtConfig struct {
	Enabled *bool  `json:"enabled"`
	Limit   *int   `json:"limit"`
	Since   string `json:"since"`
}

// stickyExtResult is the sticky events extension's result.
type stickyExtResult struct {
	NextBatch string                `json:"next_batch,omitempty"`
	Rooms     map[string]*eventList `json:"rooms"`
}

// slidingSticky fills the sticky events extension: the still-sticky events of the user's
// joined rooms after since (the extension's since, else the connection's last position), and
// every one of a room sent whole in this response (just joined, or new to the connection);
// oldest first, up to the limit, next_batch being where the delivery stopped.
func (s *Server) slidingSticky(ctx context.Context, viewer roomserver.Viewer, cfg *stickyExtConfig, base *connState, sel *roomSelection, resp *slidingResponse, to Token) error {
	since := base.to.PDU
	if cfg.Since != "" {
		v, err := strconv.ParseInt(cfg.Since, 10, 64)
		if err != nil || v < 0 {
			return spec.InvalidParam("extensions.org.matrix.msc4354.sticky_events.since is not a valid token")
		}
		since = v
	}
	limit := defaultStickyExtLimit
	if cfg.Limit != nil && *cfg.Limit > 0 {
		limit = min(*cfg.Limit, maxStickyExtLimit)
	}
	joined := map[int64]string{}
	for _, c := range sel.rooms {
		if c.m.Membership == spec.Join {
			joined[c.m.RoomNID] = c.m.RoomID
		}
	}
	now := time.Now().UnixMilli()
	refs, err := s.db.UnexpiredSticky(ctx, to.PDU, now)
	if err != nil {
		return err
	}
	nextBatch, picked := max(since, to.PDU), refs[:0]
	for _, r := range refs {
		roomID, ok := joined[r.RoomNID]
		if !ok || (r.NID <= since && !(resp.Rooms[roomID] != nil && resp.Rooms[roomID].Initial)) {
			continue
		}
		if len(picked) == limit {
			nextBatch = picked[len(picked)-1].NID
			break
		}
		picked = append(picked, r)
	}
	sticky, err := s.db.StickyEventsOf(ctx, picked)
	if err != nil {
		return err
	}
	byRoom := map[int64][]storage.StickyEvent{}
	for _, se := range sticky {
		byRoom[se.RoomNID] = append(byRoom[se.RoomNID], se)
	}
	result := &stickyExtResult{Rooms: map[string]*eventList{}}
	for roomNID, evs := range byRoom {
		roomID := joined[roomNID]
		var tl []roomserver.ClientEvent
		if room := resp.Rooms[roomID]; room != nil {
			tl = room.Timeline
		}
		list, err := s.stickyList(ctx, viewer, roomID, evs, tl, now)
		if err != nil {
			return err
		}
		if list != nil {
			result.Rooms[roomID] = list
		}
	}
	if len(result.Rooms) > 0 || cfg.Since != "" {
		result.NextBatch = strconv.FormatInt(nextBatch, 10)
	}
	resp.Extensions.StickyEvents = result
	return nil
}

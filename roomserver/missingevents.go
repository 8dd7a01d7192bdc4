package roomserver

import (
	"container/heap"
	"context"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/lattice-chat/lattice/storage"
)

// MissingEvents returns up to limit events of the room that a server holding earliest lacks
// to reach latest (POST /get_missing_events): the spec's "breadth-first walk of the
// prev_events for the latest_events, ignoring any events in earliest_events and stopping at
// the limit", skipping events shallower than minDepth. latest themselves are not returned.
//
// The walk also leaves out the ancestors of earliest_events, which the asking server has by
// definition: across a fork (latest descends from both earliest and a branch it lacks) a
// walk that stopped only at earliest_events themselves would go down the other branch to
// the room's creation, answering the room's old state instead of the missing messages. The
// two walks go together, deepest event first (depth grows along prev_events), so an event
// reachable from earliest_events is known as such before the walk from latest gets to it;
// the walk from earliest goes no deeper than the walk from latest needs.
func (s *Server) MissingEvents(ctx context.Context, roomID string, earliest, latest []string, limit int, minDepth int64) ([]*storage.Event, error) {
	row, ver, err := s.storedRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	w := &missingWalk{s: s, ver: ver, roomNID: row.NID, minDepth: minDepth,
		queued: map[string]bool{}, excluded: map[string]bool{}, pending: map[string]bool{}}
	for _, id := range latest {
		w.queued[id] = true // never answered
	}
	if err := w.push(ctx, earliest, true); err != nil {
		return nil, err
	}
	starts, err := s.db.EventsByID(ctx, latest)
	if err != nil {
		return nil, err
	}
	for _, ev := range starts {
		if ev.RoomNID == row.NID && ev.InDAG() && !w.excluded[ev.EventID] {
			if err := w.pushPrev(ctx, ev, false); err != nil {
				return nil, err
			}
		}
	}
	var out []*storage.Event
	for len(w.pending) > 0 && len(out) < limit {
		ev := heap.Pop(&w.queue).(*storage.Event)
		excluded := w.excluded[ev.EventID]
		if !excluded {
			delete(w.pending, ev.EventID)
			out = append(out, ev)
		}
		if err := w.pushPrev(ctx, ev, excluded); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Depth != out[j].Depth {
			return out[i].Depth < out[j].Depth
		}
		return out[i].NID < out[j].NID
	})
	return out, nil
}

// missingWalk is the two walks of MissingEvents over one queue, deepest event first.
type missingWalk struct {
	s        *Server
	ver      gomatrixserverlib.IRoomVersion
	roomNID  int64
	minDepth int64
	queued   map[string]bool // event IDs queued once (or never to be: latest_events)
	excluded map[string]bool // ancestors of earliest_events (and themselves)
	pending  map[string]bool // in the queue and not excluded: the walk from latest goes on
	queue    eventHeap
}

// push queues the accepted events of the room with the given IDs, as ancestors of
// earliest_events (excluded) or of latest_events. An event queued from latest and then found
// to descend to earliest becomes excluded.
func (w *missingWalk) push(ctx context.Context, ids []string, excluded bool) error {
	var fresh []string
	for _, id := range ids {
		switch {
		case excluded && w.queued[id] && !w.excluded[id]:
			w.excluded[id] = true
			delete(w.pending, id)
		case excluded && !w.queued[id]:
			w.excluded[id] = true
			w.queued[id] = true
			fresh = append(fresh, id)
		case !excluded && !w.queued[id]:
			w.queued[id] = true
			fresh = append(fresh, id)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	evs, err := w.s.db.EventsByID(ctx, fresh)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if ev.RoomNID == w.roomNID && ev.InDAG() && ev.Depth >= w.minDepth {
			heap.Push(&w.queue, ev)
			if !w.excluded[ev.EventID] {
				w.pending[ev.EventID] = true
			}
		}
	}
	return nil
}

// pushPrev queues the prev_events of ev.
func (w *missingWalk) pushPrev(ctx context.Context, ev *storage.Event, excluded bool) error {
	pdus, err := w.s.pdusOf(ctx, w.ver, []*storage.Event{ev})
	if err != nil {
		return err
	}
	for _, p := range pdus {
		if err := w.push(ctx, p.PrevEventIDs(), excluded); err != nil {
			return err
		}
	}
	return nil
}

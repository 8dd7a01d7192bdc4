package storage

import (
	"context"
	"fmt"
)

// TopoPos is a position in a room's topological order: the point just before the event at
// (depth, stream position). Paging backwards from it returns the events before it; paging
// forwards returns the events from it on.
type TopoPos struct {
	Depth int64
	NID   int64
}

// The positions before every event and after every event.
var (
	TopoStart = TopoPos{Depth: -1, NID: -1}
	TopoEnd   = TopoPos{Depth: 1 << 62, NID: 1 << 62}
)

// After returns the position just after the event at (p.Depth, p.NID).
func After(p TopoPos) TopoPos { return TopoPos{Depth: p.Depth, NID: p.NID + 1} }

// At returns the position just before ev.
func At(ev *Event) TopoPos { return TopoPos{Depth: ev.Depth, NID: ev.NID} }

func (p TopoPos) less(q TopoPos) bool {
	return p.Depth < q.Depth || (p.Depth == q.Depth && p.NID < q.NID)
}

// PagePos is a point in a room's history that /messages pages from: it divides the room's
// events into those before it and those from it on. Mostly it is a topological position
// (Bound 0, Early equal to Late).
//
// A /sync timeline is the room's newest events by stream position, and after a fork (two
// servers partitioned, each adding events) the events before a stream position are not the
// events before any topological position: an event of one branch that came early may be
// deeper than one of the other branch that came late. The point just before a timeline is
// then split: the events before stream position Bound, with the backfilled ones (history
// older than anything this server had, stored late), are divided at Early; the others at
// Late. Paging on from a split point stays split, so that a client paging back from a
// prev_batch reads every event that its /sync did not give exactly once, deepest first.
type PagePos struct {
	Late  TopoPos
	Bound int64
	Early TopoPos
}

// Plain returns the topological position p as a PagePos.
func Plain(p TopoPos) PagePos { return PagePos{Late: p, Early: p} }

// StreamSplit returns the point between the room's events before stream position bound (and
// the backfilled ones) and the events from bound on.
func StreamSplit(bound int64) PagePos { return PagePos{Late: TopoStart, Bound: bound, Early: TopoEnd} }

// Split reports whether p divides the events before and after stream position p.Bound
// differently.
func (p PagePos) Split() bool { return p.Bound != 0 && p.Early != p.Late }

// Passed returns the point where the page after ev goes on: just before ev backwards, just
// after it forwards.
func (p PagePos) Passed(ev *Event, backwards bool) PagePos {
	at := At(ev)
	if backwards {
		p.Early, p.Late = minPos(p.Early, at), minPos(p.Late, at)
	} else {
		at = After(at)
		p.Early, p.Late = maxPos(p.Early, at), maxPos(p.Late, at)
	}
	if !p.Split() {
		p = Plain(p.Late)
	}
	return p
}

func minPos(a, b TopoPos) TopoPos {
	if b.less(a) {
		return b
	}
	return a
}

func maxPos(a, b TopoPos) TopoPos {
	if a.less(b) {
		return b
	}
	return a
}

// cond returns the SQL condition that an event is before p (before) or from p on, adding
// its arguments to args (placeholders numbered after the ones there).
func (p PagePos) cond(before bool, args *[]any) string {
	if !p.Split() {
		return topoCond(p.Late, before, args)
	}
	*args = append(*args, p.Bound)
	early := fmt.Sprintf("(event_nid < $%d OR status = 'backfilled')", len(*args))
	late := fmt.Sprintf("(event_nid >= $%d AND status <> 'backfilled')", len(*args))
	// Leave out the halves that hold nothing (the point just before a /sync timeline has every
	// early event before it and every late one after it), so that the index on
	// (room_nid, depth, event_nid) serves the rest.
	var parts []string
	if !(before && p.Early == TopoStart) && !(!before && p.Early == TopoEnd) {
		parts = append(parts, early+" AND "+topoCond(p.Early, before, args))
	}
	if !(before && p.Late == TopoStart) && !(!before && p.Late == TopoEnd) {
		parts = append(parts, late+" AND "+topoCond(p.Late, before, args))
	}
	switch len(parts) {
	case 0:
		return "FALSE"
	case 1:
		return "(" + parts[0] + ")"
	}
	return "((" + parts[0] + ") OR (" + parts[1] + "))"
}

// topoCond is the SQL condition that an event is before p (before) or from p on.
func topoCond(p TopoPos, before bool, args *[]any) string {
	*args = append(*args, p.Depth, p.NID)
	d, n := len(*args)-1, len(*args)
	if before {
		return fmt.Sprintf("(depth < $%d OR (depth = $%d AND event_nid < $%d))", d, d, n)
	}
	return fmt.Sprintf("(depth > $%d OR (depth = $%d AND event_nid >= $%d))", d, d, n)
}

// RoomEventsTopo pages through the room's events in topological order from the position
// from towards to (when given): backwards, the events in [to, from) newest first; forwards,
// the events in [from, to) oldest first.
func (q *Q) RoomEventsTopo(ctx context.Context, roomNID int64, from TopoPos, to *TopoPos, backwards bool, limit int) ([]*Event, error) {
	var toPos *PagePos
	if to != nil {
		p := Plain(*to)
		toPos = &p
	}
	return q.RoomEventsPage(ctx, roomNID, Plain(from), toPos, backwards, limit)
}

// RoomEventsPage pages through the room's timeline and backfilled events from the point from
// towards to (when given): backwards, the events before from and not before to, deepest
// first; forwards, the events not before from and before to, shallowest first. Events of the
// same depth go in stream order.
func (q *Q) RoomEventsPage(ctx context.Context, roomNID int64, from PagePos, to *PagePos, backwards bool, limit int) ([]*Event, error) {
	args := []any{roomNID}
	where := "room_nid = $1 AND (NOT hidden OR status = 'backfilled') AND " + from.cond(backwards, &args)
	if to != nil {
		where += " AND " + to.cond(!backwards, &args)
	}
	order := "depth ASC, event_nid ASC"
	if backwards {
		order = "depth DESC, event_nid DESC"
	}
	args = append(args, limit)
	return q.events(ctx, fmt.Sprintf(`SELECT `+eventColumns+` FROM events WHERE %s ORDER BY %s LIMIT $%d`, where, order, len(args)), args...)
}

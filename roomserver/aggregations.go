package roomserver

import (
	"context"

	"github.com/lattice-chat/lattice/storage"
)

// bundleAggregations adds unsigned["m.relations"] to the events that have child events the
// spec aggregates: m.thread (latest event, count, current_user_participated), m.replace (the
// most recent valid edit) and m.reference (the referring event IDs). m.annotation is not
// aggregated. Events of ignored users are left out.
func (s *Server) bundleAggregations(ctx context.Context, roomID string, evs []*storage.Event, out []ClientEvent, v Viewer) error {
	var ids []string
	byID := make(map[string]int, len(evs))
	for i, ev := range evs {
		if ev.HasChildren {
			ids = append(ids, ev.EventID)
			byID[ev.EventID] = i
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rels, err := s.db.RelationsOf(ctx, ids)
	if err != nil || len(rels) == 0 {
		return err
	}
	type thread struct {
		count        int
		latest       int64
		participated bool
	}
	threads := map[string]*thread{}
	edits := map[string]storage.Relation{}
	refs := map[string][]map[string]string{}
	for _, r := range rels {
		if v.Ignored[r.Sender] {
			continue
		}
		parent := evs[byID[r.RelatesTo]]
		switch r.RelType {
		case "m.thread":
			t := threads[r.RelatesTo]
			if t == nil {
				t = &thread{participated: parent.Sender == v.UserID}
				threads[r.RelatesTo] = t
			}
			t.count++
			t.latest = max(t.latest, r.EventNID)
			t.participated = t.participated || r.Sender == v.UserID
		case "m.replace":
			// Only the original sender may edit, and only with the same event type.
			if r.Sender != parent.Sender || r.EventType != parent.Type || parent.IsState() {
				continue
			}
			if cur, ok := edits[r.RelatesTo]; !ok || r.OriginTS > cur.OriginTS || (r.OriginTS == cur.OriginTS && r.EventID > cur.EventID) {
				edits[r.RelatesTo] = r
			}
		case "m.reference":
			refs[r.RelatesTo] = append(refs[r.RelatesTo], map[string]string{"event_id": r.EventID})
		}
	}
	var nids []int64
	for _, t := range threads {
		nids = append(nids, t.latest)
	}
	for _, e := range edits {
		nids = append(nids, e.EventNID)
	}
	children := map[int64]ClientEvent{}
	if len(nids) > 0 {
		rows, err := s.db.EventsByNID(ctx, nids)
		if err != nil {
			return err
		}
		// The latest thread event carries its own edits; no deeper, so no loops.
		formatted, err := s.clientEvents(ctx, s.db, roomID, rows, v, false, true)
		if err != nil {
			return err
		}
		for i, row := range rows {
			children[row.NID] = formatted[i]
		}
	}
	for parent, i := range byID {
		m := map[string]any{}
		if t := threads[parent]; t != nil {
			m["m.thread"] = map[string]any{"latest_event": children[t.latest], "count": t.count, "current_user_participated": t.participated}
		}
		if e, ok := edits[parent]; ok {
			m["m.replace"] = children[e.EventNID]
		}
		if r := refs[parent]; len(r) > 0 {
			m["m.reference"] = map[string]any{"chunk": r}
		}
		if len(m) > 0 {
			if out[i].Unsigned == nil {
				out[i].Unsigned = map[string]any{}
			}
			out[i].Unsigned["m.relations"] = m
		}
	}
	return nil
}

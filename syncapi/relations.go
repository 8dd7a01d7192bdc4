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

const (
	defaultRelationsLimit = 50
	maxRelationsLimit     = 1000
	maxRelationsDepth     = 3
)

// relationPos decodes a pagination token of /relations or /threads into the exclusive event
// NID bound that ChildRelations and ThreadRoots page with: upper for a bound that results
// must be below (from going backwards, to going forwards), else lower.
//
// Their own next_batch, "r<event NID>", names the last event returned, which the next page
// excludes in either direction. relations.yaml also accepts the tokens of /messages and
// /sync, which are points between two events, and room events use event NIDs as stream
// positions: a /sync next_batch is the point just after its PDU position, a /messages token
// the point just before its event (its place in topological order, taken in stream order).
func relationPos(tok string, upper bool) (int64, error) {
	if body, ok := strings.CutPrefix(tok, "r"); ok {
		if n, err := strconv.ParseInt(body, 10, 64); err == nil && n >= 0 {
			return n, nil
		}
	}
	var after int64 // the point lies just after this event NID
	if p, ok := parsePageToken(tok); ok {
		after = streamPointOf(p)
	} else if t, err := ParseToken(tok); err == nil {
		after = t.PDU
	} else {
		return 0, spec.InvalidParam("invalid pagination token")
	}
	switch {
	case upper && after < 0:
		return -1, nil // before every event (0 would mean no bound)
	case upper:
		return after + 1, nil
	}
	return max(after, 0), nil
}

func parseLimit(s string, def, max int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, spec.InvalidParam("limit must be a positive integer")
	}
	return min(n, max), nil
}

// handleRelations handles GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
func (s *Server) handleRelations(r *http.Request) (any, error) {
	ctx := r.Context()
	dev := httputil.Device(ctx)
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	backwards := q.Get("dir") != "f"
	if d := q.Get("dir"); d != "" && d != "b" && d != "f" {
		return nil, spec.InvalidParam("dir must be b or f")
	}
	limit, err := parseLimit(q.Get("limit"), defaultRelationsLimit, maxRelationsLimit)
	if err != nil {
		return nil, err
	}
	var from, to int64
	if t := q.Get("from"); t != "" {
		if from, err = relationPos(t, backwards); err != nil {
			return nil, err
		}
	}
	if t := q.Get("to"); t != "" {
		if to, err = relationPos(t, !backwards); err != nil {
			return nil, err
		}
	}
	_, vis, _, parent, err := s.pathEvent(r)
	if err != nil {
		return nil, err
	}
	relType, evType := httputil.PathVar(r, "relType"), httputil.PathVar(r, "eventType")
	depth := 1
	if q.Get("recurse") == "true" {
		depth = maxRelationsDepth
	}
	rels, err := s.collectRelations(ctx, parent.EventID, relType, evType, from, to, backwards, limit+1, depth)
	if err != nil {
		return nil, err
	}
	resp := map[string]any{}
	if len(rels) > limit {
		rels = rels[:limit]
		resp["next_batch"] = fmt.Sprintf("r%d", rels[len(rels)-1].EventNID)
	}
	if depth > 1 {
		resp["recursion_depth"] = depth
	}
	nids := make([]int64, len(rels))
	for i, rel := range rels {
		nids[i] = rel.EventNID
	}
	evs, err := s.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	if backwards {
		for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
			evs[i], evs[j] = evs[j], evs[i]
		}
	}
	if evs, err = vis.filter(ctx, evs); err != nil {
		return nil, err
	}
	chunk, err := s.rooms.ClientEvents(ctx, roomID, evs, s.viewer(ctx, dev))
	if err != nil {
		return nil, err
	}
	if chunk == nil {
		chunk = []roomserver.ClientEvent{}
	}
	resp["chunk"] = chunk
	return resp, nil
}

// collectRelations returns the children of parent, and with depth > 1 their children too,
// ordered by stream position in the paging direction.
func (s *Server) collectRelations(ctx context.Context, parent, relType, evType string, from, to int64, backwards bool, limit, depth int) ([]storage.Relation, error) {
	rels, err := s.db.ChildRelations(ctx, parent, relType, evType, from, to, backwards, limit)
	if err != nil || depth <= 1 {
		return rels, err
	}
	all := append([]storage.Relation(nil), rels...)
	frontier := rels
	for d := 1; d < depth && len(frontier) > 0; d++ {
		var next []storage.Relation
		for _, rel := range frontier {
			kids, err := s.db.ChildRelations(ctx, rel.EventID, relType, evType, from, to, backwards, limit)
			if err != nil {
				return nil, err
			}
			next = append(next, kids...)
		}
		all = append(all, next...)
		frontier = next
	}
	sortRelations(all, backwards)
	if len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

func sortRelations(rels []storage.Relation, backwards bool) {
	for i := 1; i < len(rels); i++ {
		for j := i; j > 0; j-- {
			a, b := rels[j-1].EventNID, rels[j].EventNID
			if (backwards && a >= b) || (!backwards && a <= b) {
				break
			}
			rels[j-1], rels[j] = rels[j], rels[j-1]
		}
	}
}

// handleThreads handles GET /_matrix/client/v1/rooms/{roomId}/threads: thread roots ordered by
// their latest reply, newest first, with their aggregations.
func (s *Server) handleThreads(r *http.Request) (any, error) {
	ctx := r.Context()
	dev := httputil.Device(ctx)
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	participant := ""
	switch q.Get("include") {
	case "", "all":
	case "participated":
		participant = dev.UserID
	default:
		return nil, spec.InvalidParam("include must be all or participated")
	}
	limit, err := parseLimit(q.Get("limit"), defaultRelationsLimit, maxRelationsLimit)
	if err != nil {
		return nil, err
	}
	var before int64
	if t := q.Get("from"); t != "" {
		if before, err = relationPos(t, true); err != nil {
			return nil, err
		}
	}
	vis, room, err := s.memberVisibility(ctx, roomID, dev.UserID)
	if err != nil {
		return nil, err
	}
	roots, err := s.db.ThreadRoots(ctx, room.NID, participant, before, limit+1)
	if err != nil {
		return nil, err
	}
	resp := map[string]any{}
	if len(roots) > limit {
		roots = roots[:limit]
		resp["next_batch"] = fmt.Sprintf("r%d", roots[len(roots)-1].EventNID)
	}
	var evs []*storage.Event
	for _, root := range roots {
		ev, err := s.visibleEvent(ctx, vis, room, root.RelatesTo)
		if err != nil {
			continue // the root is unknown or not visible to the user
		}
		evs = append(evs, ev)
	}
	chunk, err := s.rooms.ClientEvents(ctx, roomID, evs, s.viewer(ctx, dev))
	if err != nil {
		return nil, err
	}
	if chunk == nil {
		chunk = []roomserver.ClientEvent{}
	}
	resp["chunk"] = chunk
	return resp, nil
}

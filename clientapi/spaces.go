package clientapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/spaces"
	"github.com/lattice-chat/lattice/storage"
)

// Bounds of GET /hierarchy: rooms per page and how deep the walk goes.
const (
	hierarchyDefaultLimit = 50
	hierarchyMaxLimit     = 100
	hierarchyMaxDepth     = 10
)

// remoteBudget bounds the time one request spends asking other servers about rooms (each
// call is also bounded by RemoteHierarchy): rooms not learned in time are left out, and a
// later request finds the answers that did arrive in RemoteHierarchy's cache.
const remoteBudget = 10 * time.Second

// RemoteHierarchy asks other servers about rooms this server has no state of, with the
// Server-Server GET /hierarchy (federationapi implements it, with a short cache).
type RemoteHierarchy interface {
	Hierarchy(ctx context.Context, roomID string, via []string, suggestedOnly bool) (*spaces.Hierarchy, error)
}

// SetRemoteHierarchy makes /hierarchy and /room_summary ask the servers of a room's via list
// about rooms this server is not in.
func (s *Server) SetRemoteHierarchy(h RemoteHierarchy) { s.remoteHierarchy = h }

// remoteRooms is what one request learned from other servers' /hierarchy answers: the
// summaries of the children of the rooms they described (so that a child is not asked of
// again) and the children they said the request's server may not see.
type remoteRooms struct {
	ctx          context.Context // bounds the request's remote calls (remoteBudget)
	rooms        map[string]map[string]any
	inaccessible map[string]bool
}

func newRemoteRooms(ctx context.Context) *remoteRooms {
	return &remoteRooms{ctx: ctx, rooms: map[string]map[string]any{}, inaccessible: map[string]bool{}}
}

// summary describes roomID to userID, from this server's state of the room when it has
// one, else from the first server of via that answers a federation /hierarchy. It is
// M_NOT_FOUND when no server knows the room or userID may not preview it.
func (s *Server) summary(ctx context.Context, roomID string, via []string, userID string, suggestedOnly bool, remote *remoteRooms) (*spaces.Summary, string, error) {
	sum, err := spaces.Load(ctx, s.db, roomID)
	if errors.Is(err, spaces.ErrUnknown) {
		sum, err = s.remoteSummary(roomID, via, suggestedOnly, remote)
	}
	if err != nil {
		return nil, "", err
	}
	membership, ok, err := s.mayPreview(ctx, sum, roomID, userID)
	if err != nil {
		return nil, "", err
	} else if !ok {
		return nil, "", spec.NotFound("room not found")
	}
	return sum, membership, nil
}

// remoteSummary describes a room this server is not in: from an earlier answer of this
// request, else asked of the servers of via.
func (s *Server) remoteSummary(roomID string, via []string, suggestedOnly bool, remote *remoteRooms) (*spaces.Summary, error) {
	notFound := spec.NotFound("room not found")
	if s.remoteHierarchy == nil || remote == nil || remote.inaccessible[roomID] {
		return nil, notFound
	}
	if chunk, ok := remote.rooms[roomID]; ok {
		if sum, ok := spaces.FromChunk(chunk); ok {
			return sum, nil
		}
		return nil, notFound
	}
	if len(via) == 0 || remote.ctx.Err() != nil {
		return nil, notFound
	}
	h, err := s.remoteHierarchy.Hierarchy(remote.ctx, roomID, via, suggestedOnly)
	if err != nil {
		return nil, notFound
	}
	sum, ok := spaces.FromChunk(h.Room)
	if !ok || sum.Chunk["room_id"] != roomID {
		return nil, notFound
	}
	// Only the room's own children are taken from the answer: a server speaks for the
	// space it was asked about, not for other parts of the tree.
	listed := make(map[string]bool, len(sum.Children))
	for _, c := range sum.Children {
		listed[c.RoomID] = true
	}
	for _, c := range h.Children {
		if id, _ := c["room_id"].(string); listed[id] {
			if _, seen := remote.rooms[id]; !seen {
				remote.rooms[id] = c
			}
		}
	}
	for _, id := range h.InaccessibleChildren {
		if listed[id] {
			remote.inaccessible[id] = true
		}
	}
	return sum, nil
}

// mayPreview reports whether userID may see the summary of roomID (the rooms of
// client-server space_hierarchy.yaml): userID is joined, invited or knocking, the room is
// world-readable or joinable by anyone (public, knock, knock_restricted), or userID is
// joined to a room that a restricted join rule allows. It returns userID's membership.
func (s *Server) mayPreview(ctx context.Context, sum *spaces.Summary, roomID, userID string) (string, bool, error) {
	membership := ""
	room, err := s.db.Room(ctx, roomID)
	if err == nil {
		if membership, err = s.db.Membership(ctx, room.NID, userID); err != nil {
			return "", false, err
		}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return "", false, err
	}
	switch {
	case membership == spec.Join || membership == spec.Invite || membership == spec.Knock:
	case sum.WorldReadable():
	case sum.Joinable():
	case sum.JoinRule() == spec.Restricted && s.joinedAny(ctx, userID, sum.AllowedRoomIDs()):
	default:
		return membership, false, nil
	}
	return membership, true, nil
}

// joinedAny reports whether userID is joined to one of roomIDs.
func (s *Server) joinedAny(ctx context.Context, userID string, roomIDs []string) bool {
	for _, id := range roomIDs {
		room, err := s.db.Room(ctx, id)
		if err != nil {
			continue
		}
		if m, err := s.db.Membership(ctx, room.NID, userID); err == nil && m == spec.Join {
			return true
		}
	}
	return false
}

// handleRoomSummary handles GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (v1.15). A
// room this server is not in is asked of the servers of ?via= (and those another server's
// directory names for its alias) over federation.
func (s *Server) handleRoomSummary(r *http.Request) (any, error) {
	ctx := r.Context()
	roomID, via, err := s.resolveSummaryRoom(r)
	if err != nil {
		return nil, err
	}
	remoteCtx, cancel := context.WithTimeout(ctx, remoteBudget)
	defer cancel()
	sum, membership, err := s.summary(ctx, roomID, via, httputil.Device(ctx).UserID, false, newRemoteRooms(remoteCtx))
	if err != nil {
		return nil, err
	}
	chunk := make(map[string]any, len(sum.Chunk)+1)
	for k, v := range sum.Chunk {
		chunk[k] = v
	}
	if membership != "" {
		chunk["membership"] = membership
	}
	return chunk, nil
}

// resolveSummaryRoom returns the room of /room_summary's path and the servers to ask about
// it: ?via=, then, for another server's alias, the servers its directory names.
func (s *Server) resolveSummaryRoom(r *http.Request) (string, []string, error) {
	idOrAlias := httputil.PathVar(r, "roomIdOrAlias")
	var via []string
	for _, v := range r.URL.Query()["via"] {
		if v != "" && v != s.cfg.ServerName {
			via = append(via, v)
		}
	}
	if i := strings.IndexByte(idOrAlias, ':'); strings.HasPrefix(idOrAlias, "#") && i >= 0 &&
		idOrAlias[i+1:] != s.cfg.ServerName && s.remoteDirectory != nil {
		roomID, servers, err := s.remoteDirectory.QueryAlias(r.Context(), idOrAlias)
		if err != nil {
			return "", nil, err
		}
		return roomID, append(via, servers...), nil
	}
	roomID, err := s.rooms.ResolveRoom(r.Context(), idOrAlias)
	return roomID, via, err
}

// handleHierarchy handles GET /_matrix/client/v1/rooms/{roomId}/hierarchy: the space tree
// below roomId, depth first, children in the spaces module's order, rooms the user may not
// preview left out with their subtrees. A child this server is not in is asked of the
// servers of its m.space.child via list (federation GET /hierarchy), whose answer also
// describes that child's children. The from token is the offset into the walk.
func (s *Server) handleHierarchy(r *http.Request) (any, error) {
	roomID, err := httputil.PathRoomID(r, "roomId")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	limit, maxDepth, from := hierarchyDefaultLimit, hierarchyMaxDepth, 0
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			return nil, spec.InvalidParam("limit must be a positive integer")
		}
		limit = min(limit, hierarchyMaxLimit)
	}
	if v := q.Get("max_depth"); v != "" {
		if maxDepth, err = strconv.Atoi(v); err != nil || maxDepth < 0 {
			return nil, spec.InvalidParam("max_depth must be a non-negative integer")
		}
		maxDepth = min(maxDepth, hierarchyMaxDepth)
	}
	if v := q.Get("from"); v != "" {
		if from, err = strconv.Atoi(v); err != nil || from < 0 {
			return nil, spec.InvalidParam("invalid from token")
		}
	}
	suggestedOnly := q.Get("suggested_only") == "true"
	ctx := r.Context()
	userID := httputil.Device(ctx).UserID
	remoteCtx, cancel := context.WithTimeout(ctx, remoteBudget)
	defer cancel()
	remote := newRemoteRooms(remoteCtx)
	root, _, err := s.summary(ctx, roomID, nil, userID, suggestedOnly, remote)
	if isNotFound(err) {
		return nil, spec.Forbidden("you may not preview this room")
	} else if err != nil {
		return nil, err
	}
	type item struct {
		sum   *spaces.Summary
		depth int
	}
	var rooms []map[string]any
	seen := map[string]bool{roomID: true}
	stack := []item{{root, 0}}
	for n := 0; len(stack) > 0 && len(rooms) < limit; n++ {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n >= from {
			// A hierarchy chunk is the summary plus children_state.
			rooms = append(rooms, it.sum.WithChildrenState())
		}
		if it.depth >= maxDepth {
			continue
		}
		children := spaces.Order(it.sum.Children)
		// Pushed in reverse so that the first child is visited next.
		for i := len(children) - 1; i >= 0; i-- {
			c := children[i]
			if seen[c.RoomID] || (suggestedOnly && !c.Suggested) {
				continue
			}
			sum, _, err := s.summary(ctx, c.RoomID, c.Via, userID, suggestedOnly, remote)
			if isNotFound(err) {
				continue
			} else if err != nil {
				return nil, err
			}
			seen[c.RoomID] = true
			stack = append(stack, item{sum, it.depth + 1})
		}
	}
	resp := map[string]any{"rooms": rooms}
	if len(stack) > 0 {
		resp["next_batch"] = strconv.Itoa(from + len(rooms))
	}
	if rooms == nil {
		resp["rooms"] = []any{}
	}
	return resp, nil
}

// isNotFound reports whether err is M_NOT_FOUND.
func isNotFound(err error) bool {
	var me spec.MatrixError
	return errors.As(err, &me) && me.ErrCode == spec.ErrorNotFound
}

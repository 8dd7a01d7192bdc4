package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/spaces"
)

const (
	// remoteHierarchyTTL is how long another server's /hierarchy answer (or its failure to
	// give one) is reused: a client pages through a space and reopens it, and each page
	// walks the tree again. The spec asks for the answers to be cached for a period of time.
	remoteHierarchyTTL = time.Minute
	// remoteHierarchyTimeout bounds one server's answer, so that a dead server costs a
	// client's /hierarchy a few seconds at most.
	remoteHierarchyTimeout = 3 * time.Second
	// remoteHierarchyMaxServers bounds the servers of a via list asked about one room.
	remoteHierarchyMaxServers = 3
)

// RemoteHierarchy asks other servers about rooms this server is not in, with the federation
// GET /hierarchy, for the client API's /hierarchy and /room_summary
// (clientapi.RemoteHierarchy). Answers are cached for remoteHierarchyTTL.
type RemoteHierarchy struct {
	s     *Server
	mu    sync.Mutex // guards cache
	cache map[hierarchyKey]cachedHierarchy
}

type hierarchyKey struct {
	roomID        string
	suggestedOnly bool
}

type cachedHierarchy struct {
	h       *spaces.Hierarchy
	err     error
	expires time.Time
}

// RemoteHierarchy returns the lookup of other servers' space hierarchies.
func (s *Server) RemoteHierarchy() *RemoteHierarchy {
	return &RemoteHierarchy{s: s, cache: map[hierarchyKey]cachedHierarchy{}}
}

// Hierarchy asks the servers of via, in order, for roomID's summary and children until one
// answers. It is M_NOT_FOUND when none knows the room or lets this server see it, and
// M_UNKNOWN when none could be reached.
func (h *RemoteHierarchy) Hierarchy(ctx context.Context, roomID string, via []string, suggestedOnly bool) (*spaces.Hierarchy, error) {
	key := hierarchyKey{roomID, suggestedOnly}
	now := h.s.cfg.Now()
	h.mu.Lock()
	if c, ok := h.cache[key]; ok && now.Before(c.expires) {
		h.mu.Unlock()
		return c.h, c.err
	}
	h.mu.Unlock()
	res, err := h.ask(ctx, roomID, via, suggestedOnly)
	if ctx.Err() != nil {
		return nil, err // the caller gave up: say nothing about the servers
	}
	h.mu.Lock()
	if len(h.cache) > 10000 {
		h.cache = map[hierarchyKey]cachedHierarchy{}
	}
	h.cache[key] = cachedHierarchy{h: res, err: err, expires: now.Add(remoteHierarchyTTL)}
	h.mu.Unlock()
	return res, err
}

// ask tries the servers of via in order.
func (h *RemoteHierarchy) ask(ctx context.Context, roomID string, via []string, suggestedOnly bool) (*spaces.Hierarchy, error) {
	var err error = spec.NotFound("no server to ask about the room")
	asked := map[string]bool{string(h.s.cfg.ServerName): true}
	for _, server := range via {
		if asked[server] || len(asked) > remoteHierarchyMaxServers {
			continue
		}
		asked[server] = true
		var res *spaces.Hierarchy
		if res, err = h.askServer(ctx, spec.ServerName(server), roomID, suggestedOnly); err == nil {
			return res, nil
		}
		h.s.log.Debug("space hierarchy not given", "destination", server, "room_id", roomID, "err", err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// askServer sends GET /_matrix/federation/v1/hierarchy/{roomId} to server and checks that
// the answer is about roomID.
func (h *RemoteHierarchy) askServer(ctx context.Context, server spec.ServerName, roomID string, suggestedOnly bool) (*spaces.Hierarchy, error) {
	ctx, cancel := context.WithTimeout(ctx, remoteHierarchyTimeout)
	defer cancel()
	path := "/_matrix/federation/v1/hierarchy/" + url.PathEscape(roomID)
	if suggestedOnly {
		path += "?suggested_only=true"
	}
	raw, err := h.s.getRaw(ctx, server, path)
	if err != nil {
		var he gomatrix.HTTPError
		if errors.As(err, &he) && he.Code == http.StatusNotFound {
			return nil, spec.NotFound("room not found on " + string(server))
		}
		return nil, spec.MatrixError{ErrCode: "M_UNKNOWN", Err: "could not reach " + string(server) + ": " + err.Error()}
	}
	var res spaces.Hierarchy
	if err := json.Unmarshal(raw, &res); err != nil || res.Room == nil || res.Room["room_id"] != roomID {
		return nil, spec.MatrixError{ErrCode: "M_UNKNOWN", Err: string(server) + " answered about another room or in another shape"}
	}
	return &res, nil
}

// getRaw sends a signed GET to server and returns the response body as it came.
func (s *Server) getRaw(ctx context.Context, server spec.ServerName, path string) (json.RawMessage, error) {
	return s.signedRaw(ctx, "GET", server, path, nil)
}

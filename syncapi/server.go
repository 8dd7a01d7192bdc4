// Package syncapi is the read side of the client API: /sync with since-tokens and long-polling,
// /messages, /context, /event and the member lists. It never writes room events. It must not
// import clientapi or federationapi.
package syncapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/presence"
	"github.com/lattice-chat/lattice/internal/typing"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// Server is the sync API.
type Server struct {
	db         *storage.DB
	rooms      *roomserver.Server
	notifier   *Notifier
	log        *slog.Logger
	maxTimeout time.Duration
	ignored    ignoreCache
	unread     unreadCache
	typing     *typing.Typing    // typing notifications, shared with clientapi
	presence   *presence.Service // presence, shared with clientapi
	sliding    slidingSync       // sliding sync connections and caches (slidingsync_conn.go)
	build      builders          // where /sync answers are built (builders.go)
	// cluster: other processes serve the same clients (SetCluster).
	cluster bool
}

// SetCluster tells the sync API that other processes share its database and its clients, so
// that sliding sync connection states are written before their responses go out, for the
// next request of the connection to find wherever it lands. Call it before Start.
func (s *Server) SetCluster() { s.cluster = true }

// New returns the sync API. The notifier must be the roomserver's listener; typers and pres
// are shared with the client API.
func New(db *storage.DB, rooms *roomserver.Server, notifier *Notifier, maxTimeout time.Duration, typers *typing.Typing, pres *presence.Service, log *slog.Logger) *Server {
	return &Server{db: db, rooms: rooms, notifier: notifier, maxTimeout: maxTimeout, typing: typers, presence: pres, log: log}
}

// StartToken reads the newest stream positions from the database, for the notifier at start-up.
func StartToken(ctx context.Context, db *storage.DB) (Token, error) {
	pdu, err := db.SettledMaxEventNID(ctx)
	if err != nil {
		return Token{}, err
	}
	positions, err := db.StreamPositions(ctx)
	if err != nil {
		return Token{}, err
	}
	t := Token{PDU: pdu}
	for _, s := range tokenStreams {
		if s != storage.StreamPDU && s != storage.StreamTyping {
			t.Advance(s, positions[s])
		}
	}
	return t, nil
}

// Register adds the sync API routes to the router.
func (s *Server) Register(root *mux.Router) {
	v3 := root.PathPrefix("/_matrix/client/{version:(?:v3|r0)}").Subrouter()
	const get = http.MethodGet
	routes := []struct {
		method, path string
		fn           httputil.HandlerFunc
	}{
		{get, "/sync", s.handleSync},
		{get, "/rooms/{roomId}/messages", s.handleMessages},
		{get, "/rooms/{roomId}/context/{eventId}", s.handleContext},
		{get, "/rooms/{roomId}/event/{eventId}", s.handleEvent},
		{get, "/rooms/{roomId}/members", s.handleMembers},
		{get, "/rooms/{roomId}/joined_members", s.handleJoinedMembers},
		{http.MethodPost, "/search", s.handleSearch},
		{http.MethodPost, "/user/{userId}/filter", s.handleCreateFilter},
		{get, "/user/{userId}/filter/{filterId}", s.handleGetFilter},
	}
	for _, rt := range routes {
		v3.Handle(rt.path, httputil.Authenticate(s.log, s.db, httputil.Handle(s.log, rt.fn))).Methods(rt.method)
	}
	root.Handle("/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", httputil.Authenticate(s.log, s.db, httputil.Handle(s.log, s.handleSlidingSync))).Methods(http.MethodPost)
	root.Handle("/_matrix/client/unstable/io.element.msc4308/thread_subscriptions", httputil.Authenticate(s.log, s.db, httputil.Handle(s.log, s.handleThreadSubscriptions))).Methods(http.MethodGet)
	v1 := root.PathPrefix("/_matrix/client/v1").Subrouter()
	for _, rt := range []struct {
		path string
		fn   httputil.HandlerFunc
	}{
		{"/rooms/{roomId}/relations/{eventId}", s.handleRelations},
		{"/rooms/{roomId}/relations/{eventId}/{relType}", s.handleRelations},
		{"/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", s.handleRelations},
		{"/rooms/{roomId}/threads", s.handleThreads},
		{"/rooms/{roomId}/timestamp_to_event", s.handleTimestampToEvent},
	} {
		v1.Handle(rt.path, httputil.Authenticate(s.log, s.db, httputil.Handle(s.log, rt.fn))).Methods(http.MethodGet)
	}
}

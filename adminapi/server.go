// Package adminapi serves the server administration API under /_synapse/admin/: the paths,
// parameters and JSON shapes of Synapse's admin API, which admin tools (synadm, the admin web
// UIs) speak. Every route needs an access token of an account with the admin flag; a non-admin
// gets 403 M_FORBIDDEN. Each change an admin makes is logged (who, what, when).
//
// It must not import clientapi, syncapi or federationapi: what it needs of them it declares
// here as small interfaces that cmd/lattice satisfies.
package adminapi

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/storage"
)

// Waker tells /sync that a stream reached a position, waking the long-polls of users.
type Waker interface {
	Wake(stream storage.Stream, pos int64, users []string)
}

// Server is the admin API.
type Server struct {
	cfg   *config.Config
	db    *storage.DB
	rooms *roomserver.Server
	waker Waker
	log   *slog.Logger

	deviceLists DeviceListSink // nil without federation (users_deps.go)
	ops         operatorDeps   // operators_deps.go
	purger      HistoryPurger  // set by SetPurger (purge_deps.go)
	appservices AppServices    // set by SetAppServices (appservices_deps.go)
}

// New returns the admin API.
func New(cfg *config.Config, db *storage.DB, rooms *roomserver.Server, waker Waker, log *slog.Logger) *Server {
	return &Server{cfg: cfg, db: db, rooms: rooms, waker: waker, log: log}
}

// route is one admin endpoint; path is below /_synapse/admin. An open route needs no
// access token (Synapse answers server_version to anyone).
type route struct {
	method string
	path   string
	fn     httputil.HandlerFunc
	open   bool
}

// Register adds the admin routes to root.
func (s *Server) Register(root *mux.Router) {
	a := root.PathPrefix("/_synapse/admin").Subrouter()
	for _, group := range [][]route{
		s.serverRoutes(), s.userRoutes(), s.roomRoutes(), s.mediaRoutes(),
		s.registrationTokenRoutes(), s.noticeRoutes(), s.reportRoutes(),
		s.purgeRoutes(), s.appServiceRoutes(),
	} {
		for _, rt := range group {
			h := s.admin(rt.fn)
			if rt.open {
				h = httputil.Handle(s.log, rt.fn)
			}
			a.Handle(rt.path, h).Methods(rt.method)
		}
	}
	s.registerClientAdmin(root) // the spec's admin endpoints under /_matrix/client (users_client.go)
}

// admin wraps fn so that it runs only for a valid access token of an admin account.
func (s *Server) admin(fn httputil.HandlerFunc) http.Handler {
	return httputil.Authenticate(s.log, s.db, httputil.Handle(s.log, func(r *http.Request) (any, error) {
		dev := httputil.Device(r.Context())
		acct, err := s.db.Account(r.Context(), dev.UserID)
		if err != nil {
			return nil, err
		}
		if !acct.IsAdmin {
			return nil, httputil.Errorf(http.StatusForbidden, "M_FORBIDDEN", "you are not a server admin")
		}
		return fn(r)
	}))
}

// audit logs an admin action: who did it, what and to which target. Every handler that
// changes something calls it once the change is made.
func (s *Server) audit(r *http.Request, action string, attrs ...any) {
	dev := httputil.Device(r.Context())
	s.log.Info("admin action", append([]any{"admin", dev.UserID, "action", action}, attrs...)...)
}

// page reads Synapse's pagination parameters: from (an offset, default 0) and limit
// (default def, at most 1000). Bad values are 400 M_INVALID_PARAM.
func page(r *http.Request, def int) (from, limit int, err error) {
	q := r.URL.Query()
	from, limit = 0, def
	if v := q.Get("from"); v != "" {
		if from, err = strconv.Atoi(v); err != nil || from < 0 {
			return 0, 0, httputil.Errorf(http.StatusBadRequest, "M_INVALID_PARAM", "from must be a non-negative integer")
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			return 0, 0, httputil.Errorf(http.StatusBadRequest, "M_INVALID_PARAM", "limit must be a non-negative integer")
		}
	}
	return from, min(limit, 1000), nil
}

// nextToken adds next_token to a listing when more entries follow this page.
func nextToken(resp map[string]any, from, n, total int) {
	if from+n < total {
		resp["next_token"] = strconv.Itoa(from + n)
	}
}

package adminapi

import (
	"net/http"

	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// registerClientAdmin adds the Client-Server API's administration endpoints (v1.19,
// "Server administration" and "Account moderation") to root: they live under
// /_matrix/client, not /_synapse/admin. Whois is open to the user themselves; the others
// need a server admin.
func (s *Server) registerClientAdmin(root *mux.Router) {
	authed := func(fn httputil.HandlerFunc) http.Handler {
		return httputil.Authenticate(s.log, s.db, httputil.Handle(s.log, fn))
	}
	c := root.PathPrefix("/_matrix/client").Subrouter()
	c.Handle("/{version:(?:v1|v3|r0)}/admin/whois/{userId}", authed(s.handleClientWhois)).Methods(http.MethodGet)
	c.Handle("/v1/admin/suspend/{userId}", s.admin(s.handleGetSuspended)).Methods(http.MethodGet)
	c.Handle("/v1/admin/suspend/{userId}", s.admin(s.handleSetSuspended)).Methods(http.MethodPut)
	c.Handle("/v1/admin/lock/{userId}", s.admin(s.handleGetLocked)).Methods(http.MethodGet)
	c.Handle("/v1/admin/lock/{userId}", s.admin(s.handleSetLocked)).Methods(http.MethodPut)
}

// handleClientWhois handles GET /_matrix/client/v3/admin/whois/{userId}: a user may look
// themselves up, a server admin anyone.
func (s *Server) handleClientWhois(r *http.Request) (any, error) {
	me := httputil.Device(r.Context()).UserID
	if httputil.PathVar(r, "userId") != me {
		acct, err := s.db.Account(r.Context(), me)
		if err != nil {
			return nil, err
		}
		if !acct.IsAdmin {
			return nil, spec.Forbidden("you are not a server admin")
		}
	}
	return s.handleWhois(r)
}

// moderatedUser is the target of the spec's suspend and lock endpoints: 400 M_INVALID_PARAM
// for another server's user, 404 M_NOT_FOUND for an unknown or deactivated account.
func (s *Server) moderatedUser(r *http.Request) (*storage.User, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	if u.Deactivated {
		return nil, spec.NotFound("the account is deactivated")
	}
	return u, nil
}

// handleGetSuspended handles GET /_matrix/client/v1/admin/suspend/{userId}.
func (s *Server) handleGetSuspended(r *http.Request) (any, error) {
	u, err := s.moderatedUser(r)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"suspended": u.Suspended}, nil
}

// handleSetSuspended handles PUT /_matrix/client/v1/admin/suspend/{userId} {suspended}.
func (s *Server) handleSetSuspended(r *http.Request) (any, error) {
	v, err := s.moderate(r, "suspended", storage.FlagSuspended)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"suspended": v}, nil
}

// handleGetLocked handles GET /_matrix/client/v1/admin/lock/{userId}.
func (s *Server) handleGetLocked(r *http.Request) (any, error) {
	u, err := s.moderatedUser(r)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"locked": u.Locked}, nil
}

// handleSetLocked handles PUT /_matrix/client/v1/admin/lock/{userId} {locked}.
func (s *Server) handleSetLocked(r *http.Request) (any, error) {
	v, err := s.moderate(r, "locked", storage.FlagLocked)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"locked": v}, nil
}

// moderate reads {field: bool} and sets flag on the path's user; another admin may not be
// suspended or locked this way (403 M_FORBIDDEN, as the spec allows).
func (s *Server) moderate(r *http.Request, field, flag string) (bool, error) {
	u, err := s.moderatedUser(r)
	if err != nil {
		return false, err
	}
	var body map[string]any
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return false, err
	}
	v, ok := body[field].(bool)
	if _, present := body[field]; !present {
		return false, spec.MissingParam(field + " is required")
	} else if !ok {
		return false, spec.BadJSON(field + " must be a boolean")
	}
	if v && u.IsAdmin {
		return false, spec.Forbidden("server admins cannot be " + field + " this way")
	}
	if err := s.setFlag(r, u.UserID, flag, v); err != nil {
		return false, err
	}
	return v, nil
}

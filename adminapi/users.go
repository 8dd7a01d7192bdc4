package adminapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Users: list, query, create or modify, whois, deactivate, passwords, devices, pushers, account
// data, rate limits, shadow-ban, login as a user, suspension and lock (Synapse's
// docs/admin_api/user_admin_api.md). The spec's own admin endpoints under /_matrix/client
// (whois, suspend, lock) are in users_client.go.
func (s *Server) userRoutes() []route {
	const get, post, put, del = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
	return append([]route{
		{get, "/v2/users", s.handleListUsersV2, false},
		{get, "/v3/users", s.handleListUsersV3, false},
		{get, "/v2/users/{userId}", s.handleQueryUser, false},
		{put, "/v2/users/{userId}", s.handlePutUser, false},
		{get, "/v1/whois/{userId}", s.handleWhois, false},
		{post, "/v1/deactivate/{userId}", s.handleDeactivate, false},
		{post, "/v1/reset_password/{userId}", s.handleResetPassword, false},
		{get, "/v1/users/{userId}/admin", s.handleGetAdmin, false},
		{put, "/v1/users/{userId}/admin", s.handleSetAdmin, false},
		{get, "/v1/users/{userId}/joined_rooms", s.handleJoinedRooms, false},
		{get, "/v1/users/{userId}/memberships", s.handleMemberships, false},
		{get, "/v2/users/{userId}/devices", s.handleUserDevices, false},
		{post, "/v2/users/{userId}/devices", s.handleCreateDevice, false},
		{get, "/v2/users/{userId}/devices/{deviceId}", s.handleUserDevice, false},
		{put, "/v2/users/{userId}/devices/{deviceId}", s.handleRenameDevice, false},
		{del, "/v2/users/{userId}/devices/{deviceId}", s.handleDeleteDevice, false},
		{post, "/v2/users/{userId}/delete_devices", s.handleDeleteDevices, false},
		{get, "/v1/users/{userId}/pushers", s.handleUserPushers, false},
		{get, "/v1/users/{userId}/accountdata", s.handleUserAccountData, false},
		{get, "/v1/users/{userId}/override_ratelimit", s.handleGetRateLimit, false},
		{post, "/v1/users/{userId}/override_ratelimit", s.handleSetRateLimit, false},
		{del, "/v1/users/{userId}/override_ratelimit", s.handleDeleteRateLimit, false},
		{post, "/v1/users/{userId}/shadow_ban", s.handleShadowBan, false},
		{del, "/v1/users/{userId}/shadow_ban", s.handleUnshadowBan, false},
		{get, "/v1/username_available", s.handleUsernameAvailable, false},
		{post, "/v1/users/{userId}/login", s.handleLoginAsUser, false},
		{put, "/v1/suspend/{userId}", s.handleSynapseSuspend, false},
	}, s.threePIDRoutes()...) // users_threepids.go
}

// localUserID returns the user ID in the path, which must be a user of this server:
// 400 M_INVALID_PARAM otherwise.
func (s *Server) localUserID(r *http.Request) (string, error) {
	raw := httputil.PathVar(r, "userId")
	id, err := spec.NewUserID(raw, true)
	if err != nil {
		return "", spec.InvalidParam("invalid user ID")
	}
	if string(id.Domain()) != s.cfg.ServerName {
		return "", spec.InvalidParam("can only manage local users")
	}
	return id.String(), nil
}

// pathUser returns the local account named in the path: 400 M_INVALID_PARAM for a user of
// another server, 404 M_NOT_FOUND for an unknown one.
func (s *Server) pathUser(r *http.Request) (*storage.User, error) {
	userID, err := s.localUserID(r)
	if err != nil {
		return nil, err
	}
	u, err := s.db.User(r.Context(), userID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("user not found")
	}
	return u, err
}

// boolQuery reads an optional "true"/"false" query parameter; nil when absent.
func boolQuery(r *http.Request, name string) (*bool, error) {
	v, ok := r.URL.Query()[name]
	if !ok {
		return nil, nil
	}
	switch v[0] {
	case "true":
		t := true
		return &t, nil
	case "false":
		f := false
		return &f, nil
	}
	return nil, spec.InvalidParam(name + " must be true or false")
}

// handleListUsersV2 handles GET /v2/users: deactivated and locked accounts are left out
// unless asked for with deactivated=true, locked=true.
func (s *Server) handleListUsersV2(r *http.Request) (any, error) {
	return s.listUsers(r, false)
}

// handleListUsersV3 handles GET /v3/users: as v2, but deactivated=true lists only the
// deactivated accounts, deactivated=false only the active ones, and no value both.
func (s *Server) handleListUsersV3(r *http.Request) (any, error) {
	return s.listUsers(r, true)
}

func (s *Server) listUsers(r *http.Request, v3 bool) (any, error) {
	from, limit, err := page(r, 100)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	f := storage.UserFilter{Name: q.Get("name"), UserID: q.Get("user_id"), OrderBy: q.Get("order_by"),
		NotUserTypes: q["not_user_type"], From: from, Limit: limit}
	if _, ok := storage.UserOrders[f.OrderBy]; f.OrderBy != "" && !ok {
		return nil, spec.InvalidParam("unknown value for order_by")
	}
	switch q.Get("dir") {
	case "", "f":
	case "b":
		f.Backwards = true
	default:
		return nil, spec.InvalidParam("dir must be f or b")
	}
	if _, err := boolQuery(r, "guests"); err != nil { // there are no guest accounts to filter
		return nil, err
	}
	if f.Admins, err = boolQuery(r, "admins"); err != nil {
		return nil, err
	}
	deactivated, err := boolQuery(r, "deactivated")
	if err != nil {
		return nil, err
	}
	f.Deactivated = deactivated
	if !v3 && (deactivated == nil || !*deactivated) {
		f.Deactivated = new(bool) // only active accounts
	} else if !v3 {
		f.Deactivated = nil // both
	}
	locked, err := boolQuery(r, "locked")
	if err != nil {
		return nil, err
	}
	if locked == nil || !*locked {
		f.Locked = new(bool)
	}
	users, total, err := s.db.Users(r.Context(), f)
	if err != nil {
		return nil, err
	}
	list := make([]map[string]any, 0, len(users))
	for _, u := range users {
		list = append(list, userListJSON(&u))
	}
	resp := map[string]any{"users": list, "total": total}
	nextToken(resp, from, len(users), total)
	return resp, nil
}

// orNull is s, or JSON null when s is empty.
func orNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func userListJSON(u *storage.User) map[string]any {
	return map[string]any{
		"name": u.UserID, "is_guest": false, "admin": u.IsAdmin, "user_type": u.UserType,
		"deactivated": u.Deactivated, "erased": u.Erased, "shadow_banned": u.ShadowBanned,
		"displayname": orNull(u.DisplayName), "avatar_url": orNull(u.AvatarURL),
		"creation_ts": u.CreatedTS, "last_seen_ts": u.LastSeenTS, "locked": u.Locked,
	}
}

// userJSON is GET /v2/users/{userId}'s answer.
func userJSON(u *storage.User) map[string]any {
	m := userListJSON(u)
	m["threepids"] = []any{}
	m["external_ids"] = []any{}
	m["appservice_id"] = nil
	m["consent_server_notice_sent"] = nil
	m["consent_version"] = nil
	m["consent_ts"] = nil
	m["suspended"] = u.Suspended
	return m
}

// handleQueryUser handles GET /v2/users/{userId}.
func (s *Server) handleQueryUser(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	return s.userDetails(r.Context(), u)
}

// handleUsernameAvailable handles GET /v1/username_available, which answers as
// /register/available does, whatever the registration mode.
func (s *Server) handleUsernameAvailable(r *http.Request) (any, error) {
	username := r.URL.Query().Get("username")
	if username == "" {
		return nil, spec.MissingParam("username is required")
	}
	if !validLocalpart(username) {
		return nil, spec.InvalidUsername("user names may contain only a-z, 0-9, . _ = - / +")
	}
	_, err := s.db.Account(r.Context(), "@"+username+":"+s.cfg.ServerName)
	if err == nil {
		return nil, spec.UserInUse("user ID already taken")
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	return map[string]bool{"available": true}, nil
}

// validLocalpart reports whether a localpart is one registration would accept: the
// characters the spec allows new user IDs (lower case), at most 255 bytes in a user ID.
func validLocalpart(l string) bool {
	if l == "" || len(l) > 200 {
		return false
	}
	for _, c := range []byte(l) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("._=-/+", c) >= 0) {
			return false
		}
	}
	return true
}

package adminapi

import (
	"errors"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// optionalJSON decodes the request body into v unless it is empty: Synapse accepts an empty
// body where every field is optional.
func optionalJSON(r *http.Request, v any) error {
	body, err := httputil.ReadBody(r)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	return httputil.UnmarshalObject(body, v)
}

// handleDeactivate handles POST /v1/deactivate/{userId} {erase}.
func (s *Server) handleDeactivate(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Erase bool `json:"erase"`
	}
	if err := optionalJSON(r, &req); err != nil {
		return nil, err
	}
	if err := s.deactivate(r.Context(), u.UserID, req.Erase); err != nil {
		return nil, err
	}
	s.audit(r, "deactivate user", "user_id", u.UserID, "erase", req.Erase)
	return map[string]string{"id_server_unbind_result": "success"}, nil
}

// handleResetPassword handles POST /v1/reset_password/{userId} {new_password, logout_devices}.
func (s *Server) handleResetPassword(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		NewPassword   *string `json:"new_password"`
		LogoutDevices *bool   `json:"logout_devices"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.NewPassword == nil {
		return nil, spec.MissingParam("new_password is required")
	}
	if u.Deactivated {
		return nil, spec.InvalidParam("the account is deactivated")
	}
	logout := req.LogoutDevices == nil || *req.LogoutDevices
	if err := s.setPassword(r.Context(), u.UserID, *req.NewPassword, logout); err != nil {
		return nil, err
	}
	s.audit(r, "reset password", "user_id", u.UserID, "logout_devices", logout)
	return struct{}{}, nil
}

// handleGetAdmin handles GET /v1/users/{userId}/admin.
func (s *Server) handleGetAdmin(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"admin": u.IsAdmin}, nil
}

// handleSetAdmin handles PUT /v1/users/{userId}/admin {admin}; an admin cannot demote
// themselves.
func (s *Server) handleSetAdmin(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Admin *bool `json:"admin"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Admin == nil {
		return nil, spec.MissingParam("admin is required")
	}
	if u.UserID == httputil.Device(r.Context()).UserID && !*req.Admin {
		return nil, spec.InvalidParam("you may not demote yourself")
	}
	if err := s.setFlag(r, u.UserID, storage.FlagAdmin, *req.Admin); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// setFlag sets an account flag and logs the change.
func (s *Server) setFlag(r *http.Request, userID, flag string, v bool) error {
	err := s.db.WithTx(r.Context(), func(tx *storage.Tx) error {
		return tx.SetAccountFlag(r.Context(), userID, flag, v)
	})
	if err != nil {
		return err
	}
	s.audit(r, "set "+flag, "user_id", userID, "value", v)
	return nil
}

// handleJoinedRooms handles GET /v1/users/{userId}/joined_rooms.
func (s *Server) handleJoinedRooms(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	ms, err := s.db.UserMemberships(r.Context(), u.UserID, spec.Join)
	if err != nil {
		return nil, err
	}
	rooms := make([]string, 0, len(ms))
	for _, m := range ms {
		rooms = append(rooms, m.RoomID)
	}
	return map[string]any{"joined_rooms": rooms, "total": len(rooms)}, nil
}

// handleMemberships handles GET /v1/users/{userId}/memberships: every room this server knows
// the user's membership of, with that membership. Other servers' users are answered too,
// for the rooms this server is in.
func (s *Server) handleMemberships(r *http.Request) (any, error) {
	id, err := spec.NewUserID(httputil.PathVar(r, "userId"), true)
	if err != nil {
		return nil, spec.InvalidParam("invalid user ID")
	}
	ms, err := s.db.UserMemberships(r.Context(), id.String(), "")
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ms))
	for _, m := range ms {
		out[m.RoomID] = m.Membership
	}
	return map[string]any{"memberships": out}, nil
}

// handleShadowBan handles POST /v1/users/{userId}/shadow_ban.
func (s *Server) handleShadowBan(r *http.Request) (any, error) {
	return s.setShadowBan(r, true)
}

// handleUnshadowBan handles DELETE /v1/users/{userId}/shadow_ban.
func (s *Server) handleUnshadowBan(r *http.Request) (any, error) {
	return s.setShadowBan(r, false)
}

func (s *Server) setShadowBan(r *http.Request, v bool) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	if err := s.setFlag(r, u.UserID, storage.FlagShadowBanned, v); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// handleSynapseSuspend handles PUT /v1/suspend/{userId} {suspend}: Synapse's form of the
// spec's PUT /_matrix/client/v1/admin/suspend/{userId}.
func (s *Server) handleSynapseSuspend(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Suspend *bool `json:"suspend"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Suspend == nil {
		return nil, spec.MissingParam("suspend is required")
	}
	if err := s.setFlag(r, u.UserID, storage.FlagSuspended, *req.Suspend); err != nil {
		return nil, err
	}
	return map[string]bool{"user_" + u.UserID + "_suspended": *req.Suspend}, nil
}

// handleGetRateLimit handles GET /v1/users/{userId}/override_ratelimit: {} without an override.
func (s *Server) handleGetRateLimit(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	o, err := s.db.RateLimitOverride(r.Context(), u.UserID)
	if errors.Is(err, storage.ErrNotFound) {
		return struct{}{}, nil
	} else if err != nil {
		return nil, err
	}
	return map[string]int64{"messages_per_second": o.MessagesPerSecond, "burst_count": o.BurstCount}, nil
}

// handleSetRateLimit handles POST /v1/users/{userId}/override_ratelimit
// {messages_per_second, burst_count}, both non-negative integers defaulting to 0 (no limit).
func (s *Server) handleSetRateLimit(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	var req map[string]any
	if err := optionalJSON(r, &req); err != nil {
		return nil, err
	}
	var o storage.RateLimitOverride
	if o.MessagesPerSecond, err = countParam(req, "messages_per_second"); err != nil {
		return nil, err
	}
	if o.BurstCount, err = countParam(req, "burst_count"); err != nil {
		return nil, err
	}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.SetRateLimitOverride(r.Context(), u.UserID, &o) })
	if err != nil {
		return nil, err
	}
	s.audit(r, "override ratelimit", "user_id", u.UserID, "messages_per_second", o.MessagesPerSecond, "burst_count", o.BurstCount)
	return map[string]int64{"messages_per_second": o.MessagesPerSecond, "burst_count": o.BurstCount}, nil
}

// handleDeleteRateLimit handles DELETE /v1/users/{userId}/override_ratelimit.
func (s *Server) handleDeleteRateLimit(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.SetRateLimitOverride(r.Context(), u.UserID, nil) })
	if err != nil {
		return nil, err
	}
	s.audit(r, "delete ratelimit override", "user_id", u.UserID)
	return struct{}{}, nil
}

// handleLoginAsUser handles POST /v1/users/{userId}/login {valid_until_ms}: an access token to
// act as the user, on no device of theirs. An admin cannot use it to get more tokens of
// their own.
func (s *Server) handleLoginAsUser(r *http.Request) (any, error) {
	u, err := s.pathUser(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		ValidUntilMS *int64 `json:"valid_until_ms"`
	}
	if err := optionalJSON(r, &req); err != nil {
		return nil, err
	}
	me := httputil.Device(r.Context()).UserID
	if u.UserID == me {
		return nil, spec.InvalidParam("cannot use admin API to login as self")
	}
	if u.Deactivated {
		return nil, spec.InvalidParam("the account is deactivated")
	}
	now := time.Now().UnixMilli()
	var until int64
	if req.ValidUntilMS != nil {
		until = max(*req.ValidUntilMS, 1) // a time in the past gives a token that has expired
	}
	token := httputil.NewAccessToken()
	p := storage.PuppetToken{UserID: u.UserID, DeviceID: "PUPPET_" + strings.ToUpper(config.RandomSecret(8)),
		AdminUserID: me, ValidUntilMS: until, CreatedTS: now}
	err = s.db.WithTx(r.Context(), func(tx *storage.Tx) error { return tx.InsertPuppetToken(r.Context(), p, httputil.HashToken(token)) })
	if err != nil {
		return nil, err
	}
	s.audit(r, "login as user", "user_id", u.UserID, "valid_until_ms", until)
	return map[string]string{"access_token": token}, nil
}

// countParam reads an optional non-negative integer field (default 0): anything else is
// 400 M_INVALID_PARAM, as in Synapse.
func countParam(body map[string]any, name string) (int64, error) {
	v, ok := body[name]
	if !ok {
		return 0, nil
	}
	f, ok := v.(float64)
	if !ok || f < 0 || f != math.Trunc(f) || f > math.MaxInt32 {
		return 0, spec.InvalidParam(name + " must be a non-negative integer")
	}
	return int64(f), nil
}
